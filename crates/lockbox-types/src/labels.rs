//! A secret's labels: a small map sorted by key, kept in one vector.
//!
//! A secret carries a label or two, and every manager holds every secret in memory. A
//! `BTreeMap<String, String>` allocates a node of eleven slots (544 bytes) for a single label;
//! a vector of pairs allocates 48 bytes. With 40,000 secrets that was 22 MB of a 48 MB state.
//!
//! `Labels` encodes exactly as a `BTreeMap<String, String>` does, a map in key order, in
//! postcard (stored log entries and snapshots read unchanged) and in JSON (an empty one is
//! `{}`, never `[]`).

use std::fmt;

use litemap::LiteMap;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Key/value labels in key order.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(LiteMap<String, String>);

impl Labels {
    /// No labels.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`, returning its previous value.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        self.0.insert(key, value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Keeps the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        self.0.retain(|k, v| keep(k, v));
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &String)> + ExactSizeIterator {
        self.0.iter()
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// Later pairs replace earlier ones with the same key, as in a `BTreeMap`.
impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        // Sized up front: grown one pair at a time, a single label would hold room for four,
        // and the store keeps the labels the API built.
        let iter = iter.into_iter();
        let mut labels = Labels(LiteMap::with_capacity(iter.size_hint().0));
        labels.extend(iter);
        labels
    }
}

impl Extend<(String, String)> for Labels {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.0.insert(k, v);
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Labels {
        pairs.into_iter().collect()
    }
}

impl From<std::collections::BTreeMap<String, String>> for Labels {
    fn from(map: std::collections::BTreeMap<String, String>) -> Labels {
        // Already sorted: each pair is appended.
        map.into_iter().collect()
    }
}

impl From<Labels> for std::collections::BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.into_iter().collect()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        struct LabelsVisitor;

        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Labels, M::Error> {
                let mut map = LiteMap::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = access.next_entry::<String, String>()? {
                    // In order (every stored encoding) it is appended; otherwise inserted.
                    if let Some((k, v)) = map.try_append(k, v) {
                        map.insert(k, v);
                    }
                }
                Ok(Labels(map))
            }
        }

        d.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    proptest::proptest! {
        /// Stored logs and snapshots hold secret labels as postcard encoded a
        /// `BTreeMap<String, String>`, and the API answers them as JSON: `Labels` encodes
        /// byte for byte the same, whatever order the pairs came in, and decodes back.
        #[test]
        fn labels_encode_as_a_btreemap(
            pairs in proptest::collection::vec(("[a-z.=-]{0,6}", "[ -~]{0,8}"), 0..6)
        ) {
            let tree: BTreeMap<String, String> = pairs.iter().cloned().collect();
            let labels: Labels = pairs.iter().cloned().collect();
            let bytes = postcard::to_allocvec(&labels).unwrap();
            proptest::prop_assert_eq!(&bytes, &postcard::to_allocvec(&tree).unwrap());
            let json = serde_json::to_string(&labels).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&tree).unwrap());
            let back: Labels = postcard::from_bytes(&bytes).unwrap();
            proptest::prop_assert_eq!(&back, &labels);
            let from_json: Labels = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(&from_json, &labels);
            // The last of duplicate keys wins, as in a BTreeMap built from the same pairs.
            let same: Vec<(String, String)> = labels.clone().into_iter().collect();
            proptest::prop_assert_eq!(same, tree.into_iter().collect::<Vec<_>>());
        }

        /// A map in any key order (a JSON body) decodes to the sorted labels.
        #[test]
        fn unsorted_json_decodes_sorted(keys in proptest::collection::vec("[a-z]{1,4}", 0..8)) {
            let body = format!(
                "{{{}}}",
                keys.iter().map(|k| format!("\"{k}\":\"v{k}\"")).collect::<Vec<_>>().join(",")
            );
            let labels: Labels = serde_json::from_str(&body).unwrap();
            let tree: BTreeMap<String, String> = serde_json::from_str(&body).unwrap();
            proptest::prop_assert!(labels.iter().eq(tree.iter()));
        }
    }

    #[test]
    fn map_operations() {
        let mut l = Labels::from([("b".to_owned(), "2".to_owned())]);
        assert_eq!(l.insert("a".into(), "1".into()), None);
        assert_eq!(l.insert("b".into(), "3".into()), Some("2".into()));
        assert_eq!(l.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert!(l.contains_key("a") && !l.contains_key("c"));
        assert_eq!(l.get("b").map(String::as_str), Some("3"));
        assert_eq!(l.remove("a"), Some("1".into()));
        assert_eq!(l.len(), 1);
        assert_eq!(format!("{l:?}"), r#"{"b": "3"}"#);
        l.retain(|k, _| k != "b");
        assert!(l.is_empty());
        assert_eq!(serde_json::to_string(&l).unwrap(), "{}");
    }

    #[test]
    fn built_from_a_map_it_holds_no_spare_room() {
        let one: Labels =
            std::collections::BTreeMap::from([("k".to_owned(), "v".to_owned())]).into();
        assert_eq!(one.0.into_tuple_vec().capacity(), 1);
    }
}
