//! A task's networks on the engine: each lockbox network it is attached to becomes a local
//! `bridge` network of the same name, labelled for this daemon, created on first use and
//! removed once no container uses it.
//!
//! Every step that creates, checks or removes an engine network, and the creation of a
//! container on one, runs under one lock per executor ([`Networks::lock`]), so that a network is
//! never removed between the moment a starting task found it and the moment its container
//! refers to it. Several lockbox daemons on one engine cannot share a name: a network named
//! like ours but labelled for another instance (or for none, a user's own) fails the task.
//! The engine may let two networks have one name (before API 1.44 it checks duplicates only
//! when asked, and bollard cannot ask), so after creating one the executor looks for twins and
//! keeps the one with the smallest ID: two creators racing settle on the same network.

use std::collections::HashMap;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectNetworkOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
};
use lockbox_core::NetworkAttachment;

use crate::container::LABEL_INSTANCE;
use crate::engine_error;

/// The lockbox network ID an engine network stands for.
pub const LABEL_NETWORK_ID: &str = "com.lockbox.network.id";

/// An engine network a task uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineNetwork {
    /// The engine's ID.
    pub(crate) id: String,
    /// Its name (the lockbox network's).
    pub(crate) name: String,
    /// The container's DNS aliases on it.
    pub(crate) aliases: Vec<String>,
}

/// The network lock of one executor.
#[derive(Debug, Default)]
pub(crate) struct Networks {
    lock: tokio::sync::Mutex<()>,
}

impl Networks {
    /// Held while networks are made, checked or removed and while a container is created on
    /// them.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The aliases of a task on a network: the attachment's (a stack's short service name), then
/// the full service name; no duplicates or empty names.
pub(crate) fn aliases(att: &NetworkAttachment, service_name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in att
        .aliases
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(service_name))
    {
        if !a.is_empty() && !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    }
    out
}

/// The labels of the engine network for `att`: the network's, then lockbox's (which win).
pub(crate) fn network_labels(att: &NetworkAttachment, instance: &str) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = att
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert(LABEL_INSTANCE.into(), instance.into());
    m.insert(LABEL_NETWORK_ID.into(), att.id.clone());
    m
}

/// What an engine network of the wanted name is to us.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// Ours, for this lockbox network.
    This,
    /// Ours, for an earlier lockbox network of the same name (a stack removed and deployed
    /// again before its network went away).
    Earlier,
    /// Someone else's: a user's, or another lockbox daemon's.
    Foreign,
}

fn owner(
    labels: Option<&HashMap<String, String>>,
    driver: Option<&str>,
    instance: &str,
    network_id: &str,
) -> Owner {
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label(LABEL_INSTANCE) != Some(instance) || driver.is_some_and(|d| d != "bridge") {
        return Owner::Foreign;
    }
    if label(LABEL_NETWORK_ID) == Some(network_id) {
        Owner::This
    } else {
        Owner::Earlier
    }
}

fn foreign(name: &str) -> String {
    format!(
        "network {name} already exists on the Docker Engine and is not one of this lockbox daemon's: remove or rename it there (lockbox does not attach its tasks to networks it did not create)"
    )
}

/// An engine network of the wanted name.
struct Named {
    id: String,
    labels: HashMap<String, String>,
    driver: String,
    internal: bool,
}

/// Engine networks named exactly `name` (the engine's name filter matches parts of names),
/// smallest ID first.
async fn named(docker: &Docker, name: &str) -> Result<Vec<Named>, String> {
    let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
    let opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let list = docker
        .list_networks(Some(opts))
        .await
        .map_err(|e| format!("listing networks: {}", engine_error(&e)))?;
    let mut out: Vec<Named> = list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| {
            Some(Named {
                id: n.id?,
                labels: n.labels.unwrap_or_default(),
                driver: n.driver.unwrap_or_default(),
                internal: n.internal.unwrap_or(false),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Makes sure the engine has the bridge network for `att` and returns its engine ID. Call
/// with the lock held.
pub(crate) async fn ensure(
    docker: &Docker,
    instance: &str,
    att: &NetworkAttachment,
) -> Result<String, String> {
    let name = att.name.as_str();
    for _ in 0..5 {
        let existing = named(docker, name).await?;
        let of = |n: &Named| owner(Some(&n.labels), Some(&n.driver), instance, &att.id);
        if let Some(n) = existing.iter().find(|n| of(n) == Owner::Foreign) {
            tracing::warn!(network = name, labels = ?n.labels, driver = %n.driver, "a network of that name exists and is not ours");
            // Ours, if we raced its creator, goes.
            for ours in existing.iter().filter(|n| of(n) == Owner::This) {
                remove_if_unused(docker, &ours.id, name).await;
            }
            return Err(foreign(name));
        }
        if let Some(keep) = existing.iter().find(|n| of(n) == Owner::This) {
            // Twins of a racing creator: the smallest ID wins.
            for other in existing.iter().filter(|n| n.id != keep.id) {
                remove_if_unused(docker, &other.id, name).await;
            }
            return Ok(keep.id.clone());
        }
        // Only networks of an earlier lockbox network of that name (or none): one that is no
        // longer used goes; one still used by the earlier network's containers, which are on
        // their way out, is shared with them when it is alike.
        let mut in_use = None;
        for n in &existing {
            if !remove_if_unused(docker, &n.id, name).await && in_use.is_none() {
                in_use = Some(n);
            }
        }
        if let Some(n) = in_use {
            if n.internal == att.internal {
                tracing::info!(
                    network = name,
                    "sharing the engine network of an earlier lockbox network of that name, still in use"
                );
                return Ok(n.id.clone());
            }
            return Err(format!(
                "network {name} on the Docker Engine belongs to an earlier lockbox network of that name and is still in use"
            ));
        }
        let req = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            internal: Some(att.internal),
            labels: Some(network_labels(att, instance)),
            ..Default::default()
        };
        match docker.create_network(req).await {
            Ok(created) => {
                tracing::debug!(network = name, id = %created.id, "created an engine network");
                // Loop: find twins created at the same time and settle on one.
            }
            // Created meanwhile by someone else: look again.
            Err(e) if status(&e) == Some(409) => {}
            Err(e) => {
                return Err(format!(
                    "creating network {name} on the Docker Engine: {}",
                    engine_error(&e)
                ));
            }
        }
    }
    Err(format!(
        "network {name} on the Docker Engine kept changing while it was being created"
    ))
}

/// Whether some container of the engine (in any state: a created one has no endpoint yet)
/// refers to the network `name`.
async fn used(docker: &Docker, name: &str) -> Result<bool, String> {
    let filters = HashMap::from([("network".to_owned(), vec![name.to_owned()])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| engine_error(&e))?;
    // The filter matches parts of names: look at the container's networks.
    Ok(list.iter().any(|c| {
        c.network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .is_some_and(|n| n.contains_key(name))
    }))
}

/// Removes the engine network `id` (named `name`) unless a container uses it; whether it is
/// gone. Call with the lock held.
pub(crate) async fn remove_if_unused(docker: &Docker, id: &str, name: &str) -> bool {
    match docker
        .inspect_network(id, None::<InspectNetworkOptions>)
        .await
    {
        Ok(n) if n.containers.as_ref().is_some_and(|c| !c.is_empty()) => return false,
        Ok(_) => {}
        Err(e) if status(&e) == Some(404) => return true,
        Err(e) => {
            tracing::debug!(network = name, error = %engine_error(&e), "inspecting a network");
            return false;
        }
    }
    match used(docker, name).await {
        Ok(false) => {}
        Ok(true) => return false,
        Err(e) => {
            tracing::debug!(network = name, error = %e, "listing a network's containers");
            return false;
        }
    }
    match docker.remove_network(id).await {
        Ok(()) => {
            tracing::debug!(network = name, id, "removed an engine network");
            true
        }
        Err(e) if status(&e) == Some(404) => true,
        // In use ("has active endpoints"): a container was attached meanwhile.
        Err(e) => {
            tracing::debug!(network = name, error = %engine_error(&e), "engine network not removed");
            false
        }
    }
}

/// Connects a created container to a further network with its aliases.
pub(crate) async fn connect(
    docker: &Docker,
    container: &str,
    net: &EngineNetwork,
) -> Result<(), String> {
    let req = NetworkConnectRequest {
        container: container.to_owned(),
        endpoint_config: Some(EndpointSettings {
            aliases: Some(net.aliases.clone()),
            ..Default::default()
        }),
    };
    docker
        .connect_network(&net.id, req)
        .await
        .map_err(|e| format!("connecting to network {}: {}", net.name, engine_error(&e)))
}

/// The engine networks labelled for this instance: (ID, name).
pub(crate) async fn of_instance(
    docker: &Docker,
    instance: &str,
) -> Result<Vec<(String, String)>, String> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )]);
    let opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let list = docker
        .list_networks(Some(opts))
        .await
        .map_err(|e| format!("listing networks: {}", engine_error(&e)))?;
    Ok(list
        .into_iter()
        .filter(|n| {
            n.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .is_some_and(|i| i == instance)
        })
        .filter_map(|n| Some((n.id?, n.name.unwrap_or_default())))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn att() -> NetworkAttachment {
        NetworkAttachment {
            id: "n1".into(),
            name: "app_default".into(),
            attachable: false,
            internal: true,
            labels: BTreeMap::from([
                ("com.docker.stack.namespace".to_owned(), "app".to_owned()),
                (LABEL_INSTANCE.to_owned(), "spoof".to_owned()),
            ]),
            aliases: vec!["web".into()],
        }
    }

    #[test]
    fn aliases_short_then_full() {
        let a = att();
        assert_eq!(aliases(&a, "app_web"), vec!["web", "app_web"]);
        assert_eq!(aliases(&a, "web"), vec!["web"]);
        let mut b = att();
        b.aliases.clear();
        assert_eq!(aliases(&b, "svc"), vec!["svc"]);
        assert!(aliases(&b, "").is_empty());
    }

    #[test]
    fn labels_ours_win() {
        let l = network_labels(&att(), "inst");
        assert_eq!(l[LABEL_INSTANCE], "inst");
        assert_eq!(l[LABEL_NETWORK_ID], "n1");
        assert_eq!(l["com.docker.stack.namespace"], "app");
    }

    #[test]
    fn owners() {
        let l = network_labels(&att(), "inst");
        assert_eq!(owner(Some(&l), Some("bridge"), "inst", "n1"), Owner::This);
        assert_eq!(
            owner(Some(&l), Some("bridge"), "inst", "n2"),
            Owner::Earlier
        );
        assert_eq!(
            owner(Some(&l), Some("bridge"), "other", "n1"),
            Owner::Foreign
        );
        assert_eq!(
            owner(Some(&l), Some("overlay"), "inst", "n1"),
            Owner::Foreign
        );
        assert_eq!(owner(None, Some("bridge"), "inst", "n1"), Owner::Foreign);
    }
}
