//! `github.com/fvbommel/sortorder` `NaturalLess`, as used by
//! `docker secret ls` to order rows by name.

use std::cmp::Ordering;

/// Natural "less than": digit runs compare numerically (fewer leading zeros
/// first on a tie), other bytes compare bytewise, digits sort before
/// non-digits.
pub fn natural_less(s1: &str, s2: &str) -> bool {
    let (a, b) = (s1.as_bytes(), s2.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() && j < b.len() {
        let (c1, c2) = (a[i], b[j]);
        let (d1, d2) = (c1.is_ascii_digit(), c2.is_ascii_digit());
        if d1 != d2 {
            return d1;
        }
        if !d1 {
            if c1 != c2 {
                return c1 < c2;
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz1, nz2) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (len1, len2) = (i - nz1, j - nz2);
        if len1 != len2 {
            return len1 < len2;
        }
        let (n1, n2) = (&a[nz1..i], &b[nz2..j]);
        if n1 != n2 {
            return n1 < n2;
        }
        if nz1 != nz2 {
            return nz1 < nz2;
        }
    }
    a.len() < b.len()
}

/// An `Ordering` built from [`natural_less`], for `sort_by`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    if natural_less(a, b) {
        Ordering::Less
    } else if natural_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sortorder_cases() {
        // From fvbommel/sortorder's own tests and the reference docker.
        let mut v = vec![
            "fmt-a", "fmt-B", "fmt-10", "fmt-2", "fmt-1.5", "abc12", "abc2", "a", "", "02", "2",
            "1", "ab", "a1b", "a01b", "a0b",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec![
                "", "1", "2", "02", "a", "a0b", "a1b", "a01b", "ab", "abc2", "abc12", "fmt-1.5",
                "fmt-2", "fmt-10", "fmt-B", "fmt-a"
            ]
        );
        assert!(natural_less("abc2", "abc12"));
        assert!(!natural_less("abc12", "abc2"));
        assert!(natural_less("2", "02"));
        assert!(!natural_less("x", "x"));
        assert!(natural_less("0", "a"));
    }

    proptest! {
        #[test]
        fn strict_weak_order(a in "[a0-2.]{0,6}", b in "[a0-2.]{0,6}", c in "[a0-2.]{0,6}") {
            prop_assert!(!natural_less(&a, &a));
            prop_assert!(!(natural_less(&a, &b) && natural_less(&b, &a)));
            if natural_less(&a, &b) && natural_less(&b, &c) {
                prop_assert!(natural_less(&a, &c));
            }
        }

        #[test]
        fn digit_free_is_bytewise(a in "[a-zA-Z._-]{0,8}", b in "[a-zA-Z._-]{0,8}") {
            prop_assert_eq!(natural_less(&a, &b), a < b);
        }
    }
}
