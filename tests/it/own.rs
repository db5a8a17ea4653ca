//! Services of a test's own, for what the shared ones must not be put through: a tansu
//! broker that can be frozen or put behind TLS, and a PostgreSQL cluster that can be
//! restarted or configured (TLS, authentication).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::free_port;

fn is_root() -> bool {
    Command::new("id").arg("-u").output().unwrap().stdout == b"0\n"
}

/// The inodes of the TCP sockets listening on `port` (IPv4 and IPv6), from /proc.
fn listening_sockets(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (0A: LISTEN), ..., inode (the tenth).
            let local = fields.get(1).and_then(|a| a.rsplit_once(':'));
            let on_port = local.and_then(|(_, p)| u16::from_str_radix(p, 16).ok()) == Some(port);
            if on_port && fields.get(3) == Some(&"0A") && fields.len() > 9 {
                inodes.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    inodes
}

/// `pid` and every process it started, and theirs.
fn family(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", all[i]));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    all
}

/// Whether `pid`, or a process it started, is what listens on TCP `port`: a socket in the
/// LISTEN state on that port is one of its open files. Something else listening there (the
/// race of a port found free, then bound later) does not count.
pub fn listens(pid: u32, port: u16) -> bool {
    let sockets = listening_sockets(port);
    !sockets.is_empty()
        && family(pid).into_iter().any(|p| {
            let fds = std::fs::read_dir(format!("/proc/{p}/fd"));
            fds.into_iter().flatten().flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
            })
        })
}

/// Starts what `command(port)` makes, on a port free at the time of asking, and waits until
/// that process (or one it started) listens there. A port another process took between the
/// asking and the binding makes the program exit or never listen: another port is tried,
/// five in all.
pub fn spawn_listening(what: &str, command: impl FnMut(u16) -> Command) -> (Child, u16) {
    spawn_listening_on(what, std::iter::repeat_with(free_port), command)
}

/// [`spawn_listening`] over the ports `ports` gives (the tests give a taken one first).
pub fn spawn_listening_on(
    what: &str,
    ports: impl Iterator<Item = u16>,
    mut command: impl FnMut(u16) -> Command,
) -> (Child, u16) {
    for port in ports.take(5) {
        if let Some(child) = try_spawn_listening(what, port, command(port)) {
            return (child, port);
        }
        eprintln!("{what} did not listen on port {port}; trying another");
    }
    panic!("{what} did not listen on a port of its own in five tries");
}

/// Starts `command` and waits until it (or a process it started) listens on `port`; `None`,
/// with the process stopped, when it exits first or does not listen within 20 s.
pub fn try_spawn_listening(what: &str, port: u16, mut command: Command) -> Option<Child> {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if listens(child.id(), port) {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tansu broker of the test's own, in memory.
pub struct OwnBroker {
    child: Child,
    pub port: u16,
}

impl OwnBroker {
    pub fn start() -> Self {
        Self::start_advertising(None)
    }

    /// A broker that tells clients to reach it at `advertised` (`host:port`), such as a TLS
    /// front in front of it.
    pub fn start_advertising(advertised: Option<&str>) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/tansu.sh"))
            .arg("path")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let (child, port) = spawn_listening("the test's broker", |port| {
            let url = format!("tcp://127.0.0.1:{port}");
            let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
            let mut cmd = Command::new(&bin);
            cmd.args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            cmd
        });
        Self { child, port }
    }

    pub fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of the test's own. As root it runs as `postgres`, in a folder that
/// user can enter.
pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl OwnPostgres {
    fn pg(&self, args: &[&str]) -> std::process::ExitStatus {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(args[0]));
            c
        } else {
            Command::new(self.bin.join(args[0]))
        };
        cmd.args(&args[1..])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// `configure` gets the data directory after `initdb` (files it writes there become the
    /// server's) and returns more server options (`-c name=value ...`).
    pub fn start_with(configure: impl FnOnce(&Path) -> String) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("PostgreSQL's programs");
        let root = is_root();
        let base = if root {
            PathBuf::from("/var/lib/order-svc")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "own-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let chown = |path: &Path| {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:", path.to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success()
            );
        };
        if root {
            chown(&dir);
            let _ = Command::new("chmod")
                .args(["755", base.to_str().unwrap()])
                .status();
        }
        let mut pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        let data = pg.dir.join("pg");
        assert!(
            pg.pg(&[
                "initdb",
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust"
            ])
            .success(),
            "initdb"
        );
        let extra = configure(&data);
        if root {
            chown(&data);
        }
        // A port found free may be taken before the server binds it: the server then stops
        // at start saying so, and another port is tried. pg_ctl's -w waits for the server's
        // own word (postmaster.pid), so a stranger on the port is never taken for it.
        let log = pg.dir.join("log");
        for _ in 0..5 {
            let opts = format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= {extra}",
                pg.port
            );
            let data = data.to_str().unwrap();
            let log_path = log.to_str().unwrap();
            let args = [
                "pg_ctl", "-D", data, "-l", log_path, "-o", &opts, "-w", "start",
            ];
            if pg.pg(&args).success() {
                return pg;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("already in use"),
                "the test's PostgreSQL did not start:\n{text}"
            );
            eprintln!("port {} was taken; trying another", pg.port);
            pg.port = free_port();
        }
        panic!("the test's PostgreSQL found no free port in five tries");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn restart_immediate(&self) {
        self.ctl(&["-m", "immediate", "-w", "restart"]);
    }

    /// `pg_ctl -D <the cluster> ARGS`, which must succeed.
    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("pg");
        let mut all = vec!["pg_ctl", "-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        let status = self.pg(&all);
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            panic!("pg_ctl {args:?}: {status}\n{log}");
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("pg");
        // Not `ctl`: a failed stop must not panic inside drop.
        self.pg(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_port_another_process_took_is_not_taken_for_the_programs_own_and_another_is_tried() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    // A connection to the taken port succeeds (what the old check asked); who listens is
    // what tells the two apart.
    assert!(std::net::TcpStream::connect(("127.0.0.1", taken)).is_ok());
    assert!(
        listens(std::process::id(), taken),
        "this process owns its listener"
    );
    let ports = std::iter::once(taken).chain(std::iter::repeat_with(free_port));
    let (mut child, port) = spawn_listening_on("python's http.server", ports, |port| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    });
    assert_ne!(port, taken, "the taken port was passed over");
    assert!(listens(child.id(), port));
    assert!(!listens(child.id(), taken));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !listens(std::process::id(), port),
        "nothing of ours listens there once it is gone"
    );
}
