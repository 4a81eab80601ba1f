//! What one Raft entry carries: one command, or a batch of commands that were proposed
//! concurrently and share one log entry (and so one fsync).
//!
//! openraft 0.9 appends and flushes each `client_write` before it looks at the next one, so
//! without batching every write costs a full fsync in series, whatever the concurrency. The
//! store therefore groups the commands waiting to be proposed into one entry (see
//! `Store::propose`).
//!
//! On disk a single command is encoded exactly as a bare [`Command`] (the format stores always
//! had), and a batch as an enum variant with index [`BATCH_VARIANT`], far past Command's own
//! variants, followed by the commands. So every existing log decodes unchanged.

use std::fmt;

use lockbox_types::Command;
use serde::de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The variant index that marks a batch. Command has a few dozen variants at most.
pub(crate) const BATCH_VARIANT: u32 = 0x7fff;

/// The application data of one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proposal {
    /// One command (encoded as a bare `Command`).
    One(Command),
    /// Commands applied in order at the same log index.
    Batch(Vec<Command>),
}

impl Proposal {
    /// Short description for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Proposal::One(c) => c.kind(),
            Proposal::Batch(_) => "batch",
        }
    }

    /// How many commands it carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Proposal::One(_) => 1,
            Proposal::Batch(v) => v.len(),
        }
    }

    /// Roughly how many bytes it encodes to: secret values count in full, anything else as a
    /// small record. Decides where its log write runs, nothing else.
    pub(crate) fn approx_size(&self) -> usize {
        let size = |c: &Command| match c {
            Command::CreateSecret { secret } => 256 + secret.spec.data.len(),
            _ => 256,
        };
        match self {
            Proposal::One(c) => size(c),
            Proposal::Batch(v) => v.iter().map(size).sum(),
        }
    }

    /// Whether it changes the cluster's nodes or their certificates (who is a manager, which
    /// certificate is a node's, which CA signs: the cluster listener authorizes by the
    /// applied state).
    pub(crate) fn changes_nodes(&self) -> bool {
        let changes = |c: &Command| {
            matches!(
                c,
                Command::InitCluster { .. }
                    | Command::AddNode { .. }
                    | Command::RemoveNode { .. }
                    | Command::UpdateNode { .. }
                    | Command::PromoteNode { .. }
                    | Command::RecordNodeCert { .. }
                    | Command::StartRootRotation { .. }
                    | Command::FinishRootRotation { .. }
            )
        };
        match self {
            Proposal::One(c) => changes(c),
            Proposal::Batch(v) => v.iter().any(changes),
        }
    }
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Proposal::One(c) => c.serialize(s),
            Proposal::Batch(v) => s.serialize_newtype_variant("Command", BATCH_VARIANT, "Batch", v),
        }
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The variant names only matter to self-describing formats; the store uses postcard,
        // which identifies variants by index.
        d.deserialize_enum("Command", &[], ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command or a batch of commands")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Proposal, A::Error> {
        let (index, variant): (u32, A::Variant) = data.variant()?;
        if index == BATCH_VARIANT {
            return variant
                .newtype_variant::<Vec<Command>>()
                .map(Proposal::Batch);
        }
        // Hand the variant index already read back to Command's own (derived) decoder.
        Command::deserialize(Replay { index, variant }).map(Proposal::One)
    }
}

/// A deserializer for an enum whose variant index was already consumed.
struct Replay<V> {
    index: u32,
    variant: V,
}

impl<'de, A: VariantAccess<'de>> Deserializer<'de> for Replay<A> {
    type Error = A::Error;

    fn deserialize_any<W: Visitor<'de>>(self, _v: W) -> Result<W::Value, A::Error> {
        Err(de::Error::custom("a command must be decoded as an enum"))
    }

    fn deserialize_enum<W: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: W,
    ) -> Result<W::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, V: VariantAccess<'de>> EnumAccess<'de> for Replay<V> {
    type Error = V::Error;
    type Variant = V;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, V), V::Error> {
        let de: de::value::U32Deserializer<V::Error> = self.index.into_deserializer();
        Ok((seed.deserialize(de)?, self.variant))
    }
}

#[cfg(test)]
mod tests {
    use lockbox_crypto::SecretBytes;
    use lockbox_types::{Meta, Secret, SecretSpec, Timestamp};

    use super::*;

    fn create(name: &str) -> Command {
        Command::CreateSecret {
            secret: Box::new(Secret {
                id: format!("id-{name}"),
                meta: Meta {
                    version: 0,
                    created_at: Timestamp(1),
                    updated_at: Timestamp(2),
                },
                spec: SecretSpec {
                    name: name.into(),
                    data: SecretBytes::new(b"value".to_vec()),
                    ..Default::default()
                },
            }),
        }
    }

    #[test]
    fn one_command_is_encoded_as_a_bare_command() {
        for cmd in [
            Command::Noop,
            create("a"),
            Command::RemoveSecret { id: "x".into() },
        ] {
            let bare = postcard::to_allocvec(&cmd).unwrap();
            let wrapped = postcard::to_allocvec(&Proposal::One(cmd.clone())).unwrap();
            assert_eq!(bare, wrapped);
            let back: Proposal = postcard::from_bytes(&bare).unwrap();
            assert_eq!(back, Proposal::One(cmd));
        }
    }

    #[test]
    fn batches_round_trip_and_are_not_commands() {
        let p = Proposal::Batch(vec![create("a"), Command::Noop, create("b")]);
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<Proposal>(&bytes).unwrap(), p);
        assert!(postcard::from_bytes::<Command>(&bytes).is_err());
        let empty = Proposal::Batch(Vec::new());
        let bytes = postcard::to_allocvec(&empty).unwrap();
        assert_eq!(postcard::from_bytes::<Proposal>(&bytes).unwrap(), empty);
    }

    #[test]
    fn entries_written_before_batching_still_decode() {
        // An openraft entry as the store wrote it when the payload type was `Command`.
        openraft::declare_raft_types!(
            Legacy:
                D = Command,
                R = lockbox_types::Outcome,
                NodeId = u64,
                Node = openraft::BasicNode,
                Entry = openraft::Entry<Legacy>,
                SnapshotData = std::io::Cursor<Vec<u8>>,
                AsyncRuntime = openraft::TokioRuntime,
        );
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        let old = openraft::Entry::<Legacy> {
            log_id,
            payload: openraft::EntryPayload::Normal(create("old")),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let new: openraft::Entry<crate::storage::TypeConfig> =
            postcard::from_bytes(&bytes).unwrap();
        assert_eq!(new.log_id, log_id);
        match new.payload {
            openraft::EntryPayload::Normal(Proposal::One(c)) => assert_eq!(c, create("old")),
            other => panic!("decoded as {other:?}"),
        }
    }
}
