//! One machine, no cluster: the local Redis and MongoDB-compatible servers,
//! the process supervisor behind `make up`, and fresh servers for tests.

pub mod data_dir;
pub mod process;
pub mod servers;
pub mod supervisor;
pub mod testing;

pub use servers::{MongoServer, RedisServer, free_port, free_port_except};
pub use supervisor::{FunctionSpec, Ports, StackConfig, Supervisor};
