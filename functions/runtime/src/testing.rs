//! Starting a function inside a test: the same declaration and the same
//! start-up as `main`, on a free loopback port, in this process. The stores
//! a test gives it come from `store::testing`.

use std::collections::HashMap;

use crate::settings::{self, Default, Function, Settings};
use crate::{App, Config, Context, Routes};

/// A function running in this test's process.
pub struct Spawned {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    pub ctx: Context,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Spawned {
    /// Stops it as SIGTERM would and waits until it has drained.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.stopped
            .await
            .expect("the function's task ends")
            .expect("the function stops cleanly");
    }
}

/// The variables a test gives: `HOST=127.0.0.1` and `PORT=0` (any free
/// port), then `env` in order (a later pair overrides an earlier one).
fn test_env(env: &[(&str, &str)]) -> HashMap<String, String> {
    [("HOST", "127.0.0.1"), ("PORT", "0")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts `F` with `env` (see [`test_env`]); panics naming the problem if it
/// cannot start.
pub async fn spawn<F: Function>(env: &[(&str, &str)]) -> Spawned {
    try_spawn::<F>(env)
        .await
        .unwrap_or_else(|e| panic!("{} does not start: {e:#}", F::NAME))
}

/// Starts `F` with `env`, or says why it cannot (a bad variable...).
pub async fn try_spawn<F: Function>(env: &[(&str, &str)]) -> anyhow::Result<Spawned> {
    let env = test_env(env);
    let (config, own) = settings::read::<F>(&|k| env.get(k).cloned())?;
    start(config, move |ctx| F::routes(ctx, own)).await
}

/// Starts routes that are not a declared function (the runtime's own
/// tests), as `name`, with the runtime's variables from `env`.
pub async fn spawn_routes<M, Fut>(name: &str, env: &[(&str, &str)], make: M) -> Spawned
where
    M: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    try_spawn_routes(name, env, make)
        .await
        .unwrap_or_else(|e| panic!("{name} does not start: {e:#}"))
}

/// [`spawn_routes`], or why they cannot start.
pub async fn try_spawn_routes<M, Fut>(
    name: &str,
    env: &[(&str, &str)],
    make: M,
) -> anyhow::Result<Spawned>
where
    M: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    let env = test_env(env);
    start(Config::from_lookup(name, &|k| env.get(k).cloned())?, make).await
}

async fn start<M, Fut>(config: Config, make: M) -> anyhow::Result<Spawned>
where
    M: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Routes>>,
{
    crate::install_crypto_provider();
    let app = App::build(config, make).await?;
    let (port, ctx) = (app.port(), app.context().clone());
    Ok(Spawned {
        url: format!("http://127.0.0.1:{port}"),
        port,
        ctx,
        stopped: tokio::spawn(app.run_until_stopped()),
    })
}

/// Problems with `F`'s declaration against its parser, for every variable
/// with a [`Default::Value`] or [`Default::Local`]: setting it to that value
/// must give the same configuration as leaving it unset (so a parser that
/// keeps its own default, like one reading through `Env::lookup`, cannot
/// drift from the table), and a value it refuses must be refused naming it.
/// `env`: what `F` needs to start at all; a variable read only `when`
/// another has a value is tried with that value set.
pub fn declaration_problems<F: Function>(env: &[(&str, &str)]) -> Vec<String> {
    let read = |pairs: &[(&str, &str)]| {
        let env = test_env(pairs);
        settings::read::<F>(&|k| env.get(k).cloned()).map(|(c, own)| format!("{c:?} {own:?}"))
    };
    let mut problems = Vec::new();
    let given = test_env(&[]);
    for var in Config::VARS.iter().chain(F::Config::VARS) {
        let (Default::Value(value) | Default::Local(value)) = var.default else {
            continue;
        };
        if given.contains_key(var.name) {
            continue; // HOST and PORT: a test always sets them.
        }
        let mut unset: Vec<(&str, &str)> = env.to_vec();
        unset.extend(var.when);
        let with = |v: &'static str| {
            let mut pairs = unset.clone();
            pairs.push((var.name, v));
            read(&pairs)
        };
        let name = var.name;
        match (read(&unset), with(value)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => problems.push(format!(
                "{name}={value:?} (its declared default) gives another configuration than leaving it unset"
            )),
            (a, b) => problems.push(format!(
                "{name} unset or set to its default {value:?} does not start: {:?} / {:?}",
                a.err(),
                b.err()
            )),
        }
        if let Err(e) = with("not-a-value")
            && !e.to_string().contains(&format!("{name}="))
        {
            problems.push(format!(
                "{name}=\"not-a-value\" is refused without naming it: {e:#}"
            ));
        }
    }
    problems
}
