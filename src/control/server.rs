//! The control socket inside the master: a non-blocking unix listener and
//! its clients, served by the master's one loop between its other work.
//!
//! - The socket is created with its mode already applied (the umask is set
//!   around `bind`, and the master is single-threaded), so there is no
//!   moment when it is more open than `--control-socket-mode` says. A live
//!   socket of another server at the same path is left alone; a stale one
//!   is replaced, and so is the predecessor's during an upgrade (USR2).
//! - Each connection's peer is checked with `SO_PEERCRED`: root, the
//!   socket's owner (the master's user) and, as the mode grants them, its
//!   group and others. Anyone else gets one error answer and is closed.
//! - Reads and writes never block and are bounded: a request is at most
//!   [`MAX_REQUEST`] bytes, at most [`MAX_CLIENTS`] clients are served, a
//!   client that stalls mid-request or stops reading its answer for
//!   [`STALL`] is dropped, an idle one after [`IDLE`], and a connection's
//!   next request is read once the last answer is written. A malformed request
//!   gets an error answer; one that loses the framing also ends the
//!   connection.
//! - `stacks` asks every worker over its link (see `stacks.rs`) and answers
//!   when all have, or after [`STACKS_TIMEOUT`] with what came in.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, MsgFlags};
use serde_json::{json, Value};

use super::protocol::{self, Command, Decoded, Framing, Request, MAX_REQUEST};
use super::stacks::{self, Link, LinkPair};
use super::{Action, ControlError, Supervisor};
use crate::{info, warning};

/// Most clients served at once.
pub const MAX_CLIENTS: usize = 32;
/// A partial request or an unread answer may wait this long.
pub const STALL: Duration = Duration::from_secs(10);
/// An idle connection is closed after this long (gunicorn's 5 minutes).
pub const IDLE: Duration = Duration::from_secs(300);
/// How long a closed connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);
/// How long `stacks` waits for the workers.
pub const STACKS_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer sent (what gunicornc accepts); a larger one is
/// replaced by an error.
const MAX_ANSWER: usize = protocol::MAX_ANSWER;

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Close once `output` is written.
    closing: bool,
    /// Our side is shut down; what the client still sends is read and
    /// dropped until it closes too (so it reads our last answer rather
    /// than a reset).
    shut: bool,
    /// Waiting for a `stacks` answer: read nothing more meanwhile.
    waiting: bool,
    /// Last progress (bytes in or out).
    active: Instant,
    /// The peer's uid, for the log.
    uid: Option<u32>,
}

/// One `stacks` request in flight.
struct StacksOp {
    client: u64,
    id: Value,
    framing: Framing,
    req: u32,
    deadline: Instant,
    /// Worker pid -> (age, answer once it came).
    answers: BTreeMap<i32, (u64, Option<Value>)>,
}

/// The control socket and its clients.
pub struct Server {
    path: PathBuf,
    mode: u32,
    listener: UnixListener,
    /// The socket file as created: it is removed only while it is still
    /// this one (a successor may have put its own there).
    file_id: (u64, u64),
    /// The socket file's group (the directory's, if it is setgid).
    file_gid: u32,
    /// The process that created it (never a forked worker).
    owner: u32,
    started: Instant,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    links: BTreeMap<i32, Link>,
    /// Made before a fork, given out after it.
    pending: Option<LinkPair>,
    ops: Vec<StacksOp>,
    next_req: u32,
}

impl Server {
    /// Listen on `path` (relative to the current directory) with `mode`.
    /// `take_over`: replace a live socket there (the previous master's,
    /// after USR2).
    pub fn bind(path: &str, mode: u32, take_over: bool) -> Result<Server, ControlError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| ControlError::Dir(dir.display().to_string(), e))?;
            }
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(&path).is_ok() && !take_over {
                    return Err(ControlError::InUse(shown));
                }
                std::fs::remove_file(&path).map_err(|e| ControlError::Bind(shown.clone(), e))?;
            }
            Ok(_) => return Err(ControlError::NotASocket(shown)),
            Err(_) => {}
        }
        let mode = mode & 0o777;
        // The file is born with `mode`: the umask is process-wide, and the
        // master is single-threaded.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            (0o777 & !mode) as libc::mode_t,
        ));
        let bound = UnixListener::bind(&path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| ControlError::Bind(shown.clone(), e))?;
        // Exactly `mode`, whatever the file system's defaults.
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        listener
            .set_nonblocking(true)
            .map_err(|e| ControlError::Bind(shown.clone(), e))?;
        let (file_id, file_gid) = std::fs::symlink_metadata(&path)
            .map(|m| ((m.dev(), m.ino()), m.gid()))
            .unwrap_or(((0, 0), nix::unistd::getegid().as_raw()));
        info!("Control socket listening at {shown}");
        Ok(Server {
            path,
            mode,
            listener,
            file_id,
            file_gid,
            owner: std::process::id(),
            started: Instant::now(),
            clients: BTreeMap::new(),
            next_client: 0,
            links: BTreeMap::new(),
            pending: None,
            ops: Vec::new(),
            next_req: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The socket file at `path` is still the one this server made (a
    /// successor master replaces it; one that fails removes its own).
    pub fn still_there(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.file_id)
            .unwrap_or(false)
    }

    /// Before forking a worker: make its stacks link.
    pub fn before_fork(&mut self) {
        // The new worker ignores the stacks signal until it is ready for
        // it (its default action would end the worker).
        crate::sys::ignore_signal_number(crate::sys::stacks_signal());
        self.pending = match LinkPair::new() {
            Ok(p) => Some(p),
            Err(e) => {
                warning!("ctl stacks: cannot make a link for the new worker: {e}");
                None
            }
        };
    }

    /// In the master after fork: keep the master's end for `pid`.
    pub fn after_fork(&mut self, pid: i32) {
        if let Some(pair) = self.pending.take() {
            self.links.insert(pid, Link::new(pair.master, pid));
        }
    }

    /// In the new worker: keep its end of the link, close everything else
    /// (without removing the socket file, which stays the master's).
    pub fn in_child(mut self) {
        if let Some(pair) = self.pending.take() {
            stacks::adopt(pair.worker);
        }
    }

    /// Wait until one of `others` (read) or of the socket's descriptors is
    /// ready, at most `timeout` (shortened to the next `stacks` deadline).
    /// Returns whether each of `others` is readable.
    pub fn wait(&self, others: &[(BorrowedFd<'_>, bool)], timeout: Duration) -> Vec<bool> {
        let now = Instant::now();
        let mut timeout = self
            .ops
            .iter()
            .map(|op| op.deadline.saturating_duration_since(now))
            .fold(timeout, Duration::min);
        // A request read earlier waits only for its predecessor's answer,
        // which is written now: no new event will announce it.
        let ready = self.clients.values().any(|c| {
            !c.waiting
                && !c.closing
                && c.output.is_empty()
                && !matches!(protocol::decode(&c.input), Decoded::Incomplete)
        });
        if ready {
            timeout = Duration::ZERO;
        }
        let mut fds: Vec<PollFd<'_>> = others
            .iter()
            .map(|(fd, write)| {
                let flags = if *write {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                PollFd::new(*fd, flags)
            })
            .collect();
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        // A client waiting for `stacks` is left out: were it to hang up,
        // poll would report that at once, over and over.
        for c in self.clients.values().filter(|c| !c.waiting) {
            let mut want = PollFlags::empty();
            if c.shut || (!c.waiting && !c.closing && c.input.len() <= MAX_REQUEST + 4) {
                want |= PollFlags::POLLIN;
            }
            if !c.output.is_empty() {
                want |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.stream.as_fd(), want));
        }
        for l in self.links.values() {
            fds.push(PollFd::new(l.fd(), PollFlags::POLLIN));
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let _ = nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        fds[..others.len()]
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect()
    }

    /// One pass: accept, read and answer requests, collect the workers'
    /// stacks, write what is queued, drop finished or stalled clients.
    /// Returns what the master is asked to do.
    pub fn service(&mut self, sup: &dyn Supervisor) -> Vec<Action> {
        let mut actions = Vec::new();
        let workers = sup.workers();
        self.links
            .retain(|pid, _| workers.iter().any(|w| w.pid == *pid));
        self.accept();
        let now = Instant::now();
        for c in self.clients.values_mut() {
            flush(c, now);
        }
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        for id in ids {
            self.read_client(id, sup, &mut actions);
        }
        self.collect_stacks();
        let now = Instant::now();
        self.clients.retain(|_, c| {
            flush(c, now);
            if c.closing && c.output.is_empty() && !c.shut {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
                c.shut = true;
                c.active = now;
            }
            if c.shut && !discard(c) {
                return false;
            }
            let stalled = now.duration_since(c.active)
                > if c.shut {
                    LINGER
                } else if c.input.is_empty() && c.output.is_empty() && !c.waiting {
                    IDLE
                } else if c.waiting {
                    STACKS_TIMEOUT + STALL
                } else {
                    STALL
                };
            !stalled
        });
        actions
    }

    fn accept(&mut self) {
        for _ in 0..16 {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warning!("Control socket: accept failed: {e}");
                    return;
                }
            };
            // Beyond twice the limit (refused or turned-away connections
            // still lingering), a new one is closed without a word.
            if self.clients.len() >= 2 * MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut c = Client {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                closing: false,
                shut: false,
                waiting: false,
                active: Instant::now(),
                uid: None,
            };
            if let Err(why) = self.admit(&mut c) {
                warning!("Control socket: refused a connection: {why}");
                queue(
                    &mut c,
                    Framing::Frames,
                    &protocol::error(&Value::from(0), why),
                );
                c.closing = true;
            } else if self.clients.values().filter(|c| !c.closing).count() >= MAX_CLIENTS {
                let why = format!("too many control connections (at most {MAX_CLIENTS})");
                queue(
                    &mut c,
                    Framing::Frames,
                    &protocol::error(&Value::from(0), why),
                );
                c.closing = true;
            }
            self.next_client += 1;
            self.clients.insert(self.next_client, c);
        }
    }

    /// May this peer use the socket? Root, the socket's owner, and the
    /// group and others as the mode admits them.
    fn admit(&self, c: &mut Client) -> Result<(), String> {
        let cred = socket::getsockopt(&c.stream, sockopt::PeerCredentials)
            .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
        c.uid = Some(uid);
        let me = nix::unistd::geteuid().as_raw();
        if uid == 0 || uid == me {
            return Ok(());
        }
        let group = self.file_gid;
        if self.mode & 0o020 != 0 && (gid == group || in_group(pid, group)) {
            return Ok(());
        }
        if self.mode & 0o002 != 0 {
            return Ok(());
        }
        Err(format!(
            "Permission denied: uid {uid} (pid {pid}) may not use this control socket (mode {:04o}, owner uid {me})",
            self.mode
        ))
    }

    fn read_client(&mut self, id: u64, sup: &dyn Supervisor, actions: &mut Vec<Action>) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.closing || c.waiting {
            return;
        }
        let mut buf = [0u8; 4096];
        while c.input.len() <= MAX_REQUEST + 4 {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    // The client is done; answer what it sent, then close.
                    c.closing = true;
                    break;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    c.active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.closing = true;
                    c.output.clear();
                    return;
                }
            }
        }
        loop {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            // One request at a time: the next is read once the answer
            // to this one is written, so a client that does not read its
            // answers holds at most one.
            if c.waiting || !c.output.is_empty() {
                return;
            }
            match protocol::decode(&c.input) {
                Decoded::Incomplete => return,
                Decoded::Fatal(framing, e) => {
                    queue(c, framing, &protocol::error(&Value::from(0), e));
                    c.input.clear();
                    c.closing = true;
                    return;
                }
                Decoded::Request {
                    framing,
                    used,
                    request,
                } => {
                    c.input.drain(..used);
                    match request {
                        Err(e) => queue(c, framing, &protocol::error(&Value::from(0), e)),
                        Ok(r) => self.run(id, framing, r, sup, actions),
                    }
                }
            }
        }
    }

    /// Carry out one request: answer it now, or start a `stacks` round.
    fn run(
        &mut self,
        client: u64,
        framing: Framing,
        r: Request,
        sup: &dyn Supervisor,
        actions: &mut Vec<Action>,
    ) {
        let answer = match protocol::parse_command(&r.words) {
            Err(e) => protocol::error(&r.id, e),
            Ok(Command::Stacks(which)) => {
                match self.start_stacks(client, &r.id, framing, which, sup) {
                    Ok(()) => return,
                    Err(e) => protocol::error(&r.id, e),
                }
            }
            Ok(cmd) => {
                if !matches!(
                    cmd,
                    Command::ShowAll
                        | Command::ShowWorkers
                        | Command::ShowDirty
                        | Command::ShowConfig
                        | Command::ShowStats
                        | Command::ShowListeners
                        | Command::Help
                ) {
                    let uid = self.clients.get(&client).and_then(|c| c.uid);
                    let who = uid.map(|u| format!(" (uid {u})")).unwrap_or_default();
                    info!("Control socket{who}: {}", r.words.join(" "));
                }
                match super::answers::answer(cmd, sup, self.started, actions) {
                    Ok(data) => protocol::ok(&r.id, data),
                    Err(e) => protocol::error(&r.id, e),
                }
            }
        };
        if let Some(c) = self.clients.get_mut(&client) {
            queue(c, framing, &answer);
        }
    }

    fn start_stacks(
        &mut self,
        client: u64,
        id: &Value,
        framing: Framing,
        which: Option<i32>,
        sup: &dyn Supervisor,
    ) -> Result<(), String> {
        let workers: Vec<_> = sup
            .workers()
            .into_iter()
            .filter(|w| which.is_none_or(|p| p == w.pid))
            .collect();
        if let (Some(p), true) = (which, workers.is_empty()) {
            return Err(format!("Worker {p} not found"));
        }
        self.next_req = self.next_req.wrapping_add(1);
        let req = self.next_req;
        let mut answers = BTreeMap::new();
        for w in &workers {
            let answer = match self.links.get_mut(&w.pid) {
                None => Some(json!({"error": "this worker has no stacks link"})),
                // Its stacks thread starts once the app is loaded.
                Some(_) if !w.booted => Some(json!({"error": "still booting"})),
                Some(l) => match l.ask(req) {
                    Ok(()) => None,
                    Err(e) => Some(json!({"error": format!("cannot ask it: {e}")})),
                },
            };
            answers.insert(w.pid, (w.age, answer));
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.waiting = true;
        }
        self.ops.push(StacksOp {
            client,
            id: id.clone(),
            framing,
            req,
            deadline: Instant::now() + STACKS_TIMEOUT,
            answers,
        });
        Ok(())
    }

    /// Read the workers' answers; finish the rounds that are complete or
    /// due.
    fn collect_stacks(&mut self) {
        let mut broken = Vec::new();
        for (pid, link) in self.links.iter_mut() {
            match link.answers() {
                Ok(answers) => {
                    for (req, body) in answers {
                        let v = serde_json::from_slice::<Value>(&body).unwrap_or_else(
                            |e| json!({"error": format!("unreadable answer: {e}")}),
                        );
                        for op in self.ops.iter_mut().filter(|op| op.req == req) {
                            if let Some(slot) = op.answers.get_mut(pid) {
                                slot.1 = Some(v.clone());
                            }
                        }
                    }
                }
                Err(_) => broken.push(*pid),
            }
        }
        for pid in broken {
            self.links.remove(&pid);
            for op in &mut self.ops {
                if let Some(slot) = op.answers.get_mut(&pid) {
                    slot.1
                        .get_or_insert_with(|| json!({"error": "the worker exited"}));
                }
            }
        }
        let now = Instant::now();
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ops)
            .into_iter()
            .partition(|op| now >= op.deadline || op.answers.values().all(|a| a.1.is_some()));
        self.ops = open;
        for op in done {
            let workers: Vec<Value> = op
                .answers
                .into_iter()
                .map(|(pid, (age, answer))| {
                    let mut v = answer.unwrap_or_else(|| {
                        json!({"error": format!(
                            "no answer within {} s (is its Python stuck in C code holding the GIL?)",
                            STACKS_TIMEOUT.as_secs()
                        )})
                    });
                    if let Value::Object(m) = &mut v {
                        m.insert("pid".into(), Value::from(pid));
                        m.insert("age".into(), Value::from(age));
                    }
                    v
                })
                .collect();
            if let Some(c) = self.clients.get_mut(&op.client) {
                c.waiting = false;
                c.active = now;
                let count = workers.len();
                let data = json!({"workers": workers, "count": count});
                queue(c, op.framing, &protocol::ok(&op.id, data));
            }
        }
    }

    /// The master is exiting: write what is queued if the sockets take it
    /// now, and remove the socket file if it is still ours.
    pub fn close(mut self) {
        let now = Instant::now();
        for c in self.clients.values_mut() {
            flush(c, now);
        }
        self.clients.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            return;
        }
        if self.still_there() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Is `gid` among the supplementary groups of process `pid`?
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

fn queue(c: &mut Client, framing: Framing, answer: &Value) {
    let mut bytes = protocol::encode(framing, answer);
    if bytes.len() > MAX_ANSWER {
        let id = answer.get("id").cloned().unwrap_or(Value::from(0));
        let why = format!(
            "the answer is {} bytes, more than {MAX_ANSWER}",
            bytes.len()
        );
        bytes = protocol::encode(framing, &protocol::error(&id, why));
    }
    c.output.extend_from_slice(&bytes);
}

/// Read and drop what a closing client still sends; false once it has
/// closed its side (or failed).
fn discard(c: &mut Client) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Write what the socket takes now.
fn flush(c: &mut Client, now: Instant) {
    while !c.output.is_empty() {
        match socket::send(
            c.stream.as_raw_fd(),
            &c.output,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => {
                c.output.drain(..n);
                c.active = now;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(_) => {
                c.output.clear();
                c.closing = true;
                return;
            }
        }
    }
}
