//! A private redis-server on 127.0.0.1 for one test process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server, or returns `None` with a visible message when redis-server is not
    /// installed (CI installs it, so CI always runs these tests).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Option<Self> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            // CI sets AEGIS_REQUIRE_REDIS: there, a missing server fails the tests instead of
            // skipping them.
            assert!(
                std::env::var_os("AEGIS_REQUIRE_REDIS").is_none(),
                "AEGIS_REQUIRE_REDIS is set but redis-server is not installed"
            );
            eprintln!("SKIPPED: redis-server is not installed; install it (apt-get install redis-server) to run the Redis tests");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--maxmemory-policy".into(),
            "noeviction".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let child = spawn(&args, port);
        Some(Self { child, port, args })
    }

    /// Starts the server again on the same port with the same options (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.args, self.port);
    }

    /// The server's process id (to pause it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], port: u16) -> Child {
    let child = Command::new("redis-server").args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
