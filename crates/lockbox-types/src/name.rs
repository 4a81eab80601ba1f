//! Object names, validated as swarmkit's `validateAnnotations`/`validateSecretSpec` do.

use thiserror::Error;

/// Longest accepted object name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused. The texts are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name must be provided")]
    Empty,
    /// Too long, or characters outside `[a-zA-Z0-9-_.]`, or a bad first or last character.
    #[error(
        "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
    )]
    Invalid,
}

/// Checks `name` against `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$` and the length limit.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let bytes = name.as_bytes();
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::Invalid);
    }
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let first_ok = bytes.first().is_some_and(alnum);
    let last_ok = bytes.last().is_some_and(alnum);
    if first_ok && last_ok && bytes.iter().all(inner) {
        Ok(())
    } else {
        Err(NameError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_names() {
        for ok in [
            "a",
            "db_password",
            "roi-poc-jwt-secret-v1",
            "app.key.crt",
            "A1",
            &"x".repeat(64),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        for bad in [
            "-a",
            "a-",
            "_a",
            "a.",
            "a b",
            "a/b",
            "é",
            &"x".repeat(65),
            "a\n",
        ] {
            assert_eq!(validate_name(bad), Err(NameError::Invalid), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_reference_regex(s in "[a-zA-Z0-9._ -]{0,70}") {
            let b = s.as_bytes();
            let expected = !b.is_empty()
                && b.len() <= 64
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c));
            proptest::prop_assert_eq!(validate_name(&s).is_ok(), expected);
        }
    }
}
