//! Networks: stored so that `docker stack deploy` and `docker network` work against lockbox.
//! Image-`host` tasks share the host's network; the docker executor maps networks to bridges.

use lockbox_types::{Command, Meta, Network, Outcome};

use crate::CoreError;
use crate::manager::{Active, now};

impl Active {
    pub(crate) fn resolve_network(&self, key: &str) -> Result<Network, CoreError> {
        self.store.read(|st| {
            if let Some(n) = st.networks.get(key) {
                return Ok(n.clone());
            }
            if let Some(n) = st.networks.values().find(|n| n.name == key) {
                return Ok(n.clone());
            }
            let m: Vec<&Network> = if key.is_empty() {
                Vec::new()
            } else {
                st.networks
                    .values()
                    .filter(|n| n.id.starts_with(key))
                    .collect()
            };
            match m.len() {
                1 => Ok(m[0].clone()),
                0 => Err(CoreError::NotFound(format!("network {key} not found"))),
                n => Err(CoreError::Ambiguous(format!(
                    "network {key} is ambiguous ({n} matches found)"
                ))),
            }
        })
    }

    pub(crate) async fn create_network(&self, mut network: Network) -> Result<String, CoreError> {
        lockbox_types::validate_name(&network.name)
            .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        if self
            .store
            .read(|st| st.networks.values().any(|n| n.name == network.name))
        {
            return Err(CoreError::Conflict(format!(
                "network with name {} already exists",
                network.name
            )));
        }
        let t = now();
        network.id = lockbox_types::new_id();
        network.meta = Meta {
            version: 0,
            created_at: t,
            updated_at: t,
        };
        let id = network.id.clone();
        match self
            .store
            .propose(Command::CreateNetwork {
                network: Box::new(network),
            })
            .await?
        {
            Outcome::Applied { .. } => Ok(id),
            Outcome::Rejected(lockbox_types::Rejection::NameConflict { name, .. }) => Err(
                CoreError::Conflict(format!("network with name {name} already exists")),
            ),
            Outcome::Rejected(r) => Err(r.into()),
        }
    }

    pub(crate) async fn remove_network(&self, key: &str) -> Result<(), CoreError> {
        let n = self.resolve_network(key)?;
        match self
            .store
            .propose(Command::RemoveNetwork { id: n.id })
            .await?
        {
            Outcome::Applied { .. } => Ok(()),
            Outcome::Rejected(r) => Err(r.into()),
        }
    }
}
