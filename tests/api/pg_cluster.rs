//! A private PostgreSQL cluster for tests that stop and start the database, so they never
//! disturb the shared server other tests use. Skipped (with a message) when initdb is missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

fn find_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().map(|e| e.path().join("bin")).collect();
    candidates.sort();
    candidates.into_iter().rev().find(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
}

impl PrivateCluster {
    /// Starts a fresh cluster, or `None` when PostgreSQL's server binaries are not installed.
    pub fn start() -> Option<PrivateCluster> {
        let Some(bin) = find_bin() else {
            eprintln!("skipping: PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // initdb refuses to run as root: run the cluster as the postgres user then.
        let as_postgres = nix_is_root();
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = PrivateCluster { dir, bin, port, as_postgres };
        let data = cluster.data_dir();
        cluster.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        cluster.pg_start();
        Some(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let output = command.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    pub fn pg_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data_dir(), "-o", &options, "-l", &log, "-w", "start"]);
    }

    pub fn pg_stop(&self) {
        self.run("pg_ctl", &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let _ = command.args(["-D", &data, "-m", "immediate", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
