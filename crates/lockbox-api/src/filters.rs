//! Docker's `filters` query parameter: `{"key":{"value":true}}`, or the legacy
//! `{"key":["value"]}` that docker-py sends.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{ApiError, ApiResult};

/// Parsed filters: key → set of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    pub(crate) fn parse(raw: Option<&str>) -> ApiResult<Filters> {
        let raw = match raw {
            None | Some("") => return Ok(Filters::default()),
            Some(r) => r,
        };
        if let Ok(map) = serde_json::from_str::<BTreeMap<String, BTreeMap<String, bool>>>(raw) {
            return Ok(Filters(
                map.into_iter()
                    .map(|(k, v)| (k, v.into_keys().collect()))
                    .collect(),
            ));
        }
        if let Ok(map) = serde_json::from_str::<BTreeMap<String, Vec<String>>>(raw) {
            return Ok(Filters(
                map.into_iter()
                    .map(|(k, v)| (k, v.into_iter().collect()))
                    .collect(),
            ));
        }
        Err(ApiError::bad_request("invalid filter"))
    }

    /// Refuses keys outside `allowed`.
    pub(crate) fn validate(&self, allowed: &[&str]) -> ApiResult<()> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    pub(crate) fn values(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `label` values split into `(key, Some(value))` or `(key, None)`.
    pub(crate) fn labels(&self, key: &str) -> Vec<(String, Option<String>)> {
        self.values(key)
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (l, None),
            })
            .collect()
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings() {
        let a = Filters::parse(Some(r#"{"name":{"foo":true}}"#)).unwrap();
        let b = Filters::parse(Some(r#"{"name":["foo"]}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.values("name"), vec!["foo".to_string()]);
        assert!(Filters::parse(Some("nope")).is_err());
        assert!(Filters::parse(Some(r#"{"name":"foo"}"#)).is_err());
        assert_eq!(
            a.validate(&["id"]).unwrap_err().message,
            "invalid filter 'name'"
        );
        let l = Filters::parse(Some(r#"{"label":{"a":true,"b=c":true,"d=":true}}"#)).unwrap();
        assert_eq!(
            l.labels("label"),
            vec![
                ("a".into(), None),
                ("b".into(), Some("c".into())),
                ("d".into(), Some(String::new()))
            ]
        );
    }
}
