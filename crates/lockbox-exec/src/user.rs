//! `user` resolution with `/etc/passwd` and `/etc/group`, following runc's
//! `GetExecUser` (the code Docker uses), including its error texts.

use std::io;

/// The credentials the workload runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _pw = f.next();
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?;
        let _pw = f.next();
        let gid = f.next()?.parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry { name, gid, members })
    })
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, …; `None` or ""
/// = root) against the given file contents.
pub(crate) fn resolve(spec: Option<&str>, passwd: &str, group: &str) -> Result<Creds, String> {
    let spec = spec.unwrap_or("");
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    let mut creds = Creds {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
    let uid_arg: Option<u32> = user_arg.parse().ok();
    let matched = passwd_entries(passwd).find(|u| {
        if user_arg.is_empty() {
            u.uid == 0
        } else if let Some(uid) = uid_arg {
            u.uid == uid
        } else {
            u.name == user_arg
        }
    });
    let mut matched_name = None;
    match (matched, uid_arg) {
        (Some(u), _) => {
            creds.uid = u.uid;
            creds.gid = u.gid;
            matched_name = Some(u.name.to_owned());
        }
        (None, _) if user_arg.is_empty() => {}
        (None, Some(uid)) => creds.uid = uid,
        (None, None) => {
            return Err(format!(
                "unable to find user {user_arg}: no matching entries in passwd file"
            ));
        }
    }
    if !group_arg.is_empty() {
        let gid_arg: Option<u32> = group_arg.parse().ok();
        let found = group_entries(group).find(|g| match gid_arg {
            Some(gid) => g.gid == gid,
            None => g.name == group_arg,
        });
        match (found, gid_arg) {
            (Some(g), _) => creds.gid = g.gid,
            (None, Some(gid)) => creds.gid = gid,
            (None, None) => {
                return Err(format!(
                    "unable to find group {group_arg}: no matching entries in group file"
                ));
            }
        }
    } else if let Some(name) = matched_name {
        let primary = creds.gid;
        for g in group_entries(group) {
            if g.gid != primary
                && g.members.contains(&name.as_str())
                && !creds.groups.contains(&g.gid)
            {
                creds.groups.push(g.gid);
            }
        }
    }
    Ok(creds)
}

/// Reads a database file; a missing file counts as empty (as in runc).
fn read_db(path: &str) -> Result<String, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("reading {path}: {}", crate::helper::err_text(&e))),
    }
}

/// Resolves `spec` with the host's `/etc/passwd` and `/etc/group`.
pub(crate) fn resolve_host(spec: Option<&str>) -> Result<Creds, String> {
    let passwd = read_db("/etc/passwd")?;
    let group = read_db("/etc/group")?;
    resolve(spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # comment\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        adm:x:4:alice,bob\n\
        alice:x:1000:\n\
        docker:x:999:alice\n\
        self:x:1000:alice\n\
        nogroup:x:65534:\n";

    fn c(uid: u32, gid: u32, groups: &[u32]) -> Creds {
        Creds {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn default_is_root() {
        assert_eq!(resolve(None, PASSWD, GROUP).unwrap(), c(0, 0, &[]));
        assert_eq!(resolve(Some(""), PASSWD, GROUP).unwrap(), c(0, 0, &[]));
        assert_eq!(resolve(Some("root"), PASSWD, GROUP).unwrap(), c(0, 0, &[]));
    }

    #[test]
    fn name_gets_primary_and_supplementary_groups() {
        assert_eq!(
            resolve(Some("alice"), PASSWD, GROUP).unwrap(),
            c(1000, 1000, &[4, 999])
        );
        // Numeric uid matching a passwd entry behaves like the name.
        assert_eq!(
            resolve(Some("1000"), PASSWD, GROUP).unwrap(),
            c(1000, 1000, &[4, 999])
        );
    }

    #[test]
    fn explicit_group_drops_supplementary_groups() {
        assert_eq!(
            resolve(Some("alice:docker"), PASSWD, GROUP).unwrap(),
            c(1000, 999, &[])
        );
        assert_eq!(
            resolve(Some("65534:65534"), PASSWD, GROUP).unwrap(),
            c(65534, 65534, &[])
        );
        assert_eq!(
            resolve(Some("alice:4242"), PASSWD, GROUP).unwrap(),
            c(1000, 4242, &[])
        );
    }

    #[test]
    fn unknown_numeric_ids_are_used_as_is() {
        assert_eq!(
            resolve(Some("4321"), PASSWD, GROUP).unwrap(),
            c(4321, 0, &[])
        );
        assert_eq!(
            resolve(Some("4321:8765"), PASSWD, GROUP).unwrap(),
            c(4321, 8765, &[])
        );
    }

    #[test]
    fn unknown_names_are_errors_in_runc_words() {
        assert_eq!(
            resolve(Some("nobodyx"), PASSWD, GROUP).unwrap_err(),
            "unable to find user nobodyx: no matching entries in passwd file"
        );
        assert_eq!(
            resolve(Some("alice:nogroupx"), PASSWD, GROUP).unwrap_err(),
            "unable to find group nogroupx: no matching entries in group file"
        );
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        assert_eq!(resolve(Some("12:34"), "", "").unwrap(), c(12, 34, &[]));
        assert!(resolve(Some("alice"), "", "").is_err());
        assert_eq!(resolve(None, "", "").unwrap(), c(0, 0, &[]));
    }
}
