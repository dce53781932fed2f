//! A Redis Cluster of local servers (for the store tests alone: the other crates that share
//! `common` do not depend on the redis client).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;

/// A Redis Cluster of local servers, every slot assigned (`redis-cli --cluster create`).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` (at least 3) cluster-mode servers and joins them into one cluster; `None` as
    /// [`RedisServer::start`] when redis-server is not installed.
    pub fn start(n: usize) -> Option<Self> {
        let mut nodes = Vec::new();
        for i in 0..n {
            let config = crate::common::temp_path(&format!("cluster-node-{i}.conf"));
            let config = config.to_str().unwrap();
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                config,
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addresses: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (installed with redis-server) runs");
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in 0..n {
            loop {
                let info: String = ::redis::cmd("CLUSTER").arg("INFO").query(&mut cluster.connection(node)).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not come up: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(cluster)
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|s| format!("redis://127.0.0.1:{}", s.port)).collect()
    }

    /// A plain connection to node `i`.
    pub fn connection(&self, i: usize) -> ::redis::Connection {
        ::redis::Client::open(self.nodes[i].url()).unwrap().get_connection().unwrap()
    }

    /// The node that owns `key`'s slot, and the slot.
    pub fn owner(&self, key: &str) -> (usize, u16) {
        let mut conn = self.connection(0);
        let slot: u16 = ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut conn).unwrap();
        let ranges: Vec<Vec<::redis::Value>> = ::redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).unwrap();
        for range in ranges {
            let (from, to): (u16, u16) =
                (::redis::from_redis_value(&range[0]).unwrap(), ::redis::from_redis_value(&range[1]).unwrap());
            let primary: Vec<::redis::Value> = ::redis::from_redis_value(&range[2]).unwrap();
            let port: u16 = ::redis::from_redis_value(&primary[1]).unwrap();
            if from <= slot && slot <= to {
                return (self.nodes.iter().position(|n| n.port == port).unwrap(), slot);
            }
        }
        panic!("no node owns slot {slot}")
    }

    fn id(&self, i: usize) -> String {
        ::redis::cmd("CLUSTER").arg("MYID").query(&mut self.connection(i)).unwrap()
    }

    /// Moves `slot`, with its keys, from node `from` to node `to`, as a resharding does:
    /// importing and migrating marks, `MIGRATE` of every key, then the new owner announced.
    pub fn move_slot(&self, slot: u16, from: usize, to: usize) {
        self.begin_move(slot, from, to);
        self.migrate_keys(slot, from, to, None);
        self.finish_move(slot, to);
    }

    fn set_slot(&self, node: usize, slot: u16, args: &[&str]) {
        let _: () = ::redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(args).query(&mut self.connection(node)).unwrap();
    }

    /// Marks `slot` as leaving `from` for `to` (a migration in progress: `from` still owns it).
    pub fn begin_move(&self, slot: u16, from: usize, to: usize) {
        self.set_slot(to, slot, &["IMPORTING", &self.id(from)]);
        self.set_slot(from, slot, &["MIGRATING", &self.id(to)]);
    }

    /// Moves `keys` of `slot` (all of them for `None`) from `from` to `to`.
    pub fn migrate_keys(&self, slot: u16, from: usize, to: usize, keys: Option<&[String]>) {
        let migrate = |keys: &[String]| {
            let _: () = ::redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys)
                .query(&mut self.connection(from))
                .unwrap();
        };
        if let Some(keys) = keys {
            return migrate(keys);
        }
        loop {
            let keys: Vec<String> =
                ::redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(100).query(&mut self.connection(from)).unwrap();
            if keys.is_empty() {
                break;
            }
            migrate(&keys);
        }
    }

    /// Announces `to` as the owner of `slot` on every node (the migration ends).
    pub fn finish_move(&self, slot: u16, to: usize) {
        let to_id = self.id(to);
        for node in 0..self.nodes.len() {
            self.set_slot(node, slot, &["NODE", &to_id]);
        }
    }
}
