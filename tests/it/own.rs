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

/// Waits until something listens on `port` of 127.0.0.1.
pub fn wait_listening(port: u16, what: &str) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{what} did not listen on {port}");
    false
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
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let mut child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if wait_listening(port, "the test's broker") {
            return Self { child, port };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the test's broker did not listen");
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
        let pg = Self {
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
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= {extra}",
            pg.port
        );
        let log = pg.dir.join("log");
        pg.ctl(&["-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
        pg
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
