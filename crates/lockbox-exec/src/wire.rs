//! The byte formats between the daemon and the helper.
//!
//! * Spec pipe (daemon → helper): [`MAGIC`], then the task spec with every
//!   string as a `u32` big-endian length and its bytes, then for each secret
//!   its metadata and exactly `len` raw value bytes. Afterwards the same pipe
//!   carries control messages: `b'S'` + `i32` signal number (big-endian).
//! * Status pipe (helper → daemon): frames of one tag byte, a `u32` length
//!   and the payload: `b'O'` started (`u32` host pid of the workload), `b'E'`
//!   setup failed (UTF-8 message), `b'X'` exited (`i32` code or -1, `i32`
//!   signal or 0).
//! * Update socket (both ways, one request at a time): the daemon sends
//!   `b'U'`, a `u32` count, then each secret exactly as in the spec (its
//!   metadata, then `len` raw value bytes); the helper answers with one frame
//!   in the status format: `b'U'` (empty payload) when every file was
//!   replaced, `b'E'` with a UTF-8 message (never a value) otherwise.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Exit, ProcessSpec, SecretFile};

pub(crate) const MAGIC: &[u8; 8] = b"LBXEXEC1";
/// Largest string field (argument, environment entry, path, …).
const MAX_FIELD: usize = 1 << 20;
/// Largest number of argv/env entries or secrets.
const MAX_COUNT: usize = 1 << 16;
/// Largest secret value (Docker's limit is 500 KiB).
const MAX_SECRET: u64 = 64 << 20;
/// Length of a control message.
pub(crate) const CONTROL_LEN: usize = 5;
/// First byte of a secret update request.
pub(crate) const UPDATE_TAG: u8 = b'U';

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_u32(buf, u32::try_from(b.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(b);
}

fn put_opt(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => buf.push(0),
        Some(b) => {
            buf.push(1);
            put_bytes(buf, b);
        }
    }
}

/// Everything of the spec but the secret values. Secrets follow, each as
/// [`encode_secret_meta`] then its raw bytes.
pub(crate) fn encode_header(spec: &ProcessSpec, state_dir: &Path) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(MAGIC);
    put_bytes(&mut b, spec.task_id.as_bytes());
    put_bytes(&mut b, state_dir.as_os_str().as_bytes());
    put_u32(&mut b, len_u32(spec.argv.len()));
    for a in &spec.argv {
        put_bytes(&mut b, a.as_bytes());
    }
    put_u32(&mut b, len_u32(spec.env.len()));
    for e in &spec.env {
        put_bytes(&mut b, e.as_bytes());
    }
    put_opt(
        &mut b,
        spec.dir.as_deref().map(|d| d.as_os_str().as_bytes()),
    );
    put_opt(&mut b, spec.user.as_deref().map(str::as_bytes));
    put_opt(&mut b, spec.hostname.as_deref().map(str::as_bytes));
    match spec.tmpfs_size {
        None => b.push(0),
        Some(s) => {
            b.push(1);
            b.extend_from_slice(&s.to_be_bytes());
        }
    }
    put_u32(&mut b, len_u32(spec.secrets.len()));
    b
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn encode_secret_meta(s: &SecretFile) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    put_bytes(&mut b, s.target.as_os_str().as_bytes());
    put_u32(&mut b, s.uid);
    put_u32(&mut b, s.gid);
    put_u32(&mut b, s.mode);
    b.extend_from_slice(&(s.data.len() as u64).to_be_bytes());
    b
}

/// The spec as the helper sees it.
pub(crate) struct HelperSpec {
    pub(crate) task_id: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) argv: Vec<Vec<u8>>,
    pub(crate) env: Vec<Vec<u8>>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) tmpfs_size: Option<u64>,
    pub(crate) secrets: Vec<HelperSecret>,
}

pub(crate) struct HelperSecret {
    pub(crate) target: PathBuf,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for HelperSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperSecret")
            .field("target", &self.target)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed task spec: {what}"),
    )
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn get_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn get_u8(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn get_bytes(r: &mut impl Read, what: &str) -> io::Result<Vec<u8>> {
    let n = get_u32(r)? as usize;
    if n > MAX_FIELD {
        return Err(bad(what));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn get_string(r: &mut impl Read, what: &str) -> io::Result<String> {
    String::from_utf8(get_bytes(r, what)?).map_err(|_| bad(what))
}

fn get_path(r: &mut impl Read, what: &str) -> io::Result<PathBuf> {
    Ok(PathBuf::from(OsString::from_vec(get_bytes(r, what)?)))
}

fn get_opt<R: Read, T>(
    r: &mut R,
    f: impl FnOnce(&mut R) -> io::Result<T>,
) -> io::Result<Option<T>> {
    match get_u8(r)? {
        0 => Ok(None),
        1 => f(r).map(Some),
        _ => Err(bad("option flag")),
    }
}

fn get_count(r: &mut impl Read, what: &str) -> io::Result<usize> {
    let n = get_u32(r)? as usize;
    if n > MAX_COUNT {
        return Err(bad(what));
    }
    Ok(n)
}

/// Reads exactly one spec (never more bytes than it, so the control
/// messages that follow stay in the pipe).
pub(crate) fn decode<R: Read>(r: &mut R) -> io::Result<HelperSpec> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("magic"));
    }
    let task_id = get_string(r, "task id")?;
    let state_dir = get_path(r, "state dir")?;
    let argc = get_count(r, "argc")?;
    let argv = (0..argc)
        .map(|_| get_bytes(r, "argument"))
        .collect::<io::Result<_>>()?;
    let envc = get_count(r, "envc")?;
    let env = (0..envc)
        .map(|_| get_bytes(r, "environment"))
        .collect::<io::Result<_>>()?;
    let dir = get_opt(r, |r| get_path(r, "dir"))?;
    let user = get_opt(r, |r| get_string(r, "user"))?;
    let hostname = get_opt(r, |r| get_string(r, "hostname"))?;
    let tmpfs_size = get_opt(r, |r| get_u64(r))?;
    let secrets = get_secrets(r)?;
    Ok(HelperSpec {
        task_id,
        state_dir,
        argv,
        env,
        dir,
        user,
        hostname,
        tmpfs_size,
        secrets,
    })
}

/// A count, then that many secrets (metadata and value each).
fn get_secrets<R: Read>(r: &mut R) -> io::Result<Vec<HelperSecret>> {
    let n = get_count(r, "secret count")?;
    let mut secrets = Vec::with_capacity(n);
    for _ in 0..n {
        let target = get_path(r, "secret target")?;
        let uid = get_u32(r)?;
        let gid = get_u32(r)?;
        let mode = get_u32(r)?;
        let len = get_u64(r)?;
        if len > MAX_SECRET {
            return Err(bad("secret too large"));
        }
        // Allocated once at its final size: no reallocation leaves an
        // unwiped copy behind.
        let mut data = Zeroizing::new(vec![0u8; len as usize]);
        r.read_exact(&mut data)?;
        secrets.push(HelperSecret {
            target,
            uid,
            gid,
            mode,
            data,
        });
    }
    Ok(secrets)
}

/// The start of an update request; each secret follows as
/// [`encode_secret_meta`] then its raw bytes.
pub(crate) fn encode_update_header(count: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(5);
    b.push(UPDATE_TAG);
    put_u32(&mut b, len_u32(count));
    b
}

/// Reads one update request: `Ok(None)` when the stream ended before its
/// first byte (the daemon closed the channel).
pub(crate) fn decode_update<R: Read>(r: &mut R) -> io::Result<Option<Vec<HelperSecret>>> {
    let mut tag = [0u8; 1];
    loop {
        match r.read(&mut tag) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if tag[0] != UPDATE_TAG {
        return Err(bad("update tag"));
    }
    get_secrets(r).map(Some)
}

/// A status frame from the helper.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Started {
        workload_pid: u32,
    },
    Failed(String),
    Exited(Exit),
    /// Reply to an update request: every file was replaced.
    Updated,
}

pub(crate) fn encode_frame(f: &Frame) -> Vec<u8> {
    let (tag, payload) = match f {
        Frame::Started { workload_pid } => (b'O', workload_pid.to_be_bytes().to_vec()),
        Frame::Failed(msg) => (b'E', msg.as_bytes().to_vec()),
        Frame::Exited(e) => {
            let mut p = e.code.unwrap_or(-1).to_be_bytes().to_vec();
            p.extend_from_slice(&e.signal.unwrap_or(0).to_be_bytes());
            (b'X', p)
        }
        Frame::Updated => (UPDATE_TAG, Vec::new()),
    };
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(tag);
    put_bytes(&mut b, &payload);
    b
}

/// Parses the first frame of `buf`: `Ok(None)` when more bytes are needed,
/// else the frame and the number of bytes it used.
pub(crate) fn parse_frame(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FIELD {
        return Err(bad("status frame"));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let p = &buf[5..5 + len];
    let i32_at = |i: usize| i32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let frame = match (buf[0], len) {
        (b'O', 4) => Frame::Started {
            workload_pid: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
        },
        (b'E', _) => Frame::Failed(String::from_utf8_lossy(p).into_owned()),
        (b'X', 8) => {
            let (code, sig) = (i32_at(0), i32_at(4));
            Frame::Exited(if sig > 0 {
                Exit {
                    code: None,
                    signal: Some(sig),
                }
            } else {
                Exit {
                    code: Some(code),
                    signal: None,
                }
            })
        }
        (UPDATE_TAG, 0) => Frame::Updated,
        _ => return Err(bad("status frame")),
    };
    Ok(Some((frame, 5 + len)))
}

pub(crate) fn encode_control_signal(sig: i32) -> [u8; CONTROL_LEN] {
    let s = sig.to_be_bytes();
    [b'S', s[0], s[1], s[2], s[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbox_crypto::SecretBytes;

    #[test]
    fn spec_round_trip() {
        let spec = ProcessSpec {
            task_id: "t1".into(),
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            dir: Some("/tmp".into()),
            user: Some("65534:65534".into()),
            hostname: None,
            secrets: vec![SecretFile {
                target: "a/b".into(),
                data: SecretBytes::new(b"value".to_vec()),
                uid: 1,
                gid: 2,
                mode: 0o440,
            }],
            tmpfs_size: Some(4096),
        };
        let mut bytes = encode_header(&spec, Path::new("/state"));
        for s in &spec.secrets {
            bytes.extend(encode_secret_meta(s));
            bytes.extend_from_slice(s.data.expose());
        }
        bytes.extend_from_slice(&encode_control_signal(15));
        let mut r = &bytes[..];
        let d = decode(&mut r).unwrap();
        assert_eq!(d.task_id, "t1");
        assert_eq!(d.state_dir, Path::new("/state"));
        assert_eq!(
            d.argv,
            vec![b"sh".to_vec(), b"-c".to_vec(), b"echo hi".to_vec()]
        );
        assert_eq!(d.env, vec![b"A=1".to_vec()]);
        assert_eq!(d.dir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(d.user.as_deref(), Some("65534:65534"));
        assert_eq!(d.hostname, None);
        assert_eq!(d.tmpfs_size, Some(4096));
        assert_eq!(d.secrets.len(), 1);
        let s = &d.secrets[0];
        assert_eq!((s.uid, s.gid, s.mode), (1, 2, 0o440));
        assert_eq!(&s.data[..], b"value");
        // The control message is left unread.
        assert_eq!(r, &encode_control_signal(15)[..]);
    }

    #[test]
    fn truncated_spec_is_an_error() {
        let spec = ProcessSpec {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let bytes = encode_header(&spec, Path::new("/s"));
        for cut in 0..bytes.len() {
            assert!(decode(&mut &bytes[..cut]).is_err());
        }
        assert!(decode(&mut &bytes[..]).is_ok());
    }

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Started { workload_pid: 42 },
            Frame::Failed("exec: \"x\": executable file not found in $PATH".into()),
            Frame::Exited(Exit {
                code: Some(3),
                signal: None,
            }),
            Frame::Exited(Exit {
                code: None,
                signal: Some(9),
            }),
            Frame::Updated,
        ] {
            let b = encode_frame(&f);
            assert_eq!(parse_frame(&b[..b.len() - 1]).unwrap(), None);
            let (g, n) = parse_frame(&b).unwrap().unwrap();
            assert_eq!((g, n), (f, b.len()));
        }
    }

    #[test]
    fn update_round_trip() {
        let files = [
            SecretFile {
                target: "x".into(),
                data: SecretBytes::new(b"new value".to_vec()),
                uid: 3,
                gid: 4,
                mode: 0o400,
            },
            SecretFile {
                target: "/etc/y".into(),
                data: SecretBytes::new(Vec::new()),
                uid: 0,
                gid: 0,
                mode: 0o444,
            },
        ];
        let mut bytes = encode_update_header(files.len());
        for s in &files {
            bytes.extend(encode_secret_meta(s));
            bytes.extend_from_slice(s.data.expose());
        }
        let mut r = &bytes[..];
        let d = decode_update(&mut r).unwrap().unwrap();
        assert!(r.is_empty());
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].target, Path::new("x"));
        assert_eq!((d[0].uid, d[0].gid, d[0].mode), (3, 4, 0o400));
        assert_eq!(&d[0].data[..], b"new value");
        assert_eq!(d[1].target, Path::new("/etc/y"));
        assert!(d[1].data.is_empty());
        // The values never show in Debug.
        assert!(!format!("{d:?}").contains("new value"));
        // End of stream before a request; a cut request; a wrong tag.
        assert!(decode_update(&mut &b""[..]).unwrap().is_none());
        for cut in 1..bytes.len() {
            assert!(decode_update(&mut &bytes[..cut]).is_err(), "{cut}");
        }
        assert!(decode_update(&mut &b"S\0\0\0\0"[..]).is_err());
    }
}
