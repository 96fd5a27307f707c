//! The rehearsal's processes: the tools it needs, one process of the
//! function's binary per revision, a CloudEvents sink, and nginx in front,
//! reloaded into each traffic block.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::load::{self, Load, Observed};
use super::{BUILD, Declared, Options, Reload, Step, TagCheck, nginx};
use crate::{paths, scrape, tools};

/// What the rehearsal runs, found before anything starts.
pub struct Setup {
    pub kubectl: PathBuf,
    pub nginx: PathBuf,
    pub loadtest: PathBuf,
}

impl Setup {
    /// Finds kubectl, nginx and the loadtest binary; every missing one is
    /// named in the error with what provides it.
    pub fn find() -> anyhow::Result<Setup> {
        let kubectl = tools::find(&tools::KUBECTL);
        let nginx = nginx::find();
        let loadtest = built_binary("loadtest");
        let mut missing = Vec::new();
        for e in [
            kubectl.as_ref().err(),
            nginx.as_ref().err(),
            loadtest.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            missing.push(format!("{e:#}"));
        }
        if !missing.is_empty() {
            bail!(
                "the rollout rehearsal cannot run:\n  - {}",
                missing.join("\n  - ")
            );
        }
        Ok(Setup {
            kubectl: kubectl?,
            nginx: nginx?,
            loadtest: loadtest?,
        })
    }
}

/// The Cargo target directory (`target/`).
pub fn target_dir() -> PathBuf {
    paths::debug_bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths::repo_root().join("target"))
}

/// A workspace binary: `target/release/NAME` if it is there and newer than
/// `target/debug/NAME`, else `target/debug/NAME`; an error naming the build
/// command when neither exists.
pub fn built_binary(name: &str) -> anyhow::Result<PathBuf> {
    let target = target_dir();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let release = target.join("release").join(name);
    let debug = target.join("debug").join(name);
    match (modified(&release), modified(&debug)) {
        (Some(r), Some(d)) => Ok(if r >= d { release } else { debug }),
        (Some(_), None) => Ok(release),
        (None, Some(_)) => Ok(debug),
        (None, None) => bail!(
            "the {name} binary is in neither {} nor {}: build it with `{BUILD}` (make test builds every binary; \
             nginx and kubectl come from scripts/setup.sh)",
            paths::rel(&release),
            paths::rel(&debug)
        ),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// ------------------------------------------------------------------ the running processes

/// A revision broken on purpose, for the automated rehearsal: its `K_SINK`
/// is a rehearsal-only sink that answers 500 to `percent` % of events, so
/// ingest answers 503 to those writes (its downstream refused them).
/// Nothing in the function's code knows about it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub revision: String,
    pub percent: u32,
}

/// The processes of one rehearsal; all stopped when dropped (nginx first,
/// then the revisions, then the sinks).
pub(crate) struct Stage<'s> {
    front: nginx::Nginx,
    revisions: BTreeMap<String, scrape::Running>,
    _sink: nginx::Nginx,
    _faulty_sink: Option<nginx::Nginx>,
    dir: tempfile::TempDir,
    setup: &'s Setup,
    generation: u64,
    runs: u32,
}

impl<'s> Stage<'s> {
    /// Starts the sink, one process per revision any of `declared` names,
    /// and nginx serving `declared[0]`; with a `fault`, that revision's
    /// sink fails a share of events.
    pub(crate) fn start(
        setup: &'s Setup,
        declared: &[Declared],
        fault: Option<&Fault>,
    ) -> anyhow::Result<Stage<'s>> {
        let first = declared.first().context("nothing to rehearse")?;
        let binary = built_binary(&first.function)?;
        let dir = tempfile::Builder::new()
            .prefix("rollout-rehearsal-")
            .tempdir()?;
        // Run as root, nginx's workers are `nobody`: they must reach their temp directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;

        let sink_port = free_port()?;
        let sink_prefix = dir.path().join("sink");
        let sink = nginx::Nginx::start(
            &setup.nginx,
            &sink_prefix,
            &nginx::sink_conf(sink_port, &sink_prefix),
            sink_port,
        )
        .context("the CloudEvents sink (nginx)")?;

        let sink_url = format!("http://127.0.0.1:{sink_port}/");
        let faulty_sink = match fault {
            Some(f) => {
                let port = free_port()?;
                let prefix = dir.path().join("faulty-sink");
                let conf = nginx::faulty_sink_conf(port, &prefix, f.percent);
                Some(
                    nginx::Nginx::start(&setup.nginx, &prefix, &conf, port)
                        .context("the faulty CloudEvents sink (nginx)")?,
                )
            }
            None => None,
        };
        let mut revisions = BTreeMap::new();
        for d in declared {
            if d.function != first.function || d.service != first.service {
                bail!(
                    "{} and {} rehearse different Services or functions",
                    first.overlay,
                    d.overlay
                );
            }
            for rev in d.revisions() {
                if revisions.contains_key(&rev) {
                    continue;
                }
                let sink = match (fault, &faulty_sink) {
                    (Some(f), Some(n)) if f.revision == rev => {
                        format!("http://127.0.0.1:{}/", n.port)
                    }
                    _ => sink_url.clone(),
                };
                let env: Vec<(String, String)> = [
                    ("K_SERVICE", d.service.as_str()),
                    ("K_CONFIGURATION", d.service.as_str()),
                    ("K_REVISION", rev.as_str()),
                    ("K_SINK", sink.as_str()),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let running = scrape::start(&binary, &env)
                    .with_context(|| format!("revision {rev} ({})", binary.display()))?;
                revisions.insert(rev, running);
            }
        }

        let port = free_port()?;
        let prefix = dir.path().join("ingress");
        let backends: BTreeMap<String, u16> =
            revisions.iter().map(|(r, p)| (r.clone(), p.port)).collect();
        let conf = nginx::front_conf(first, &backends, port, &prefix, 1)?;
        let front = nginx::Nginx::start(&setup.nginx, &prefix, &conf, port)
            .context("the ingress (nginx)")?;
        let stage = Stage {
            front,
            revisions,
            _sink: sink,
            _faulty_sink: faulty_sink,
            dir,
            setup,
            generation: 1,
            runs: 0,
        };
        stage.wait_for_generation(Instant::now() + Duration::from_secs(10))?;
        Ok(stage)
    }

    /// Serves `declared` from now on: rewrites nginx's configuration,
    /// reloads it, waits until the new workers answer and the old ones have
    /// exited (from then on every connection gets the new routes).
    pub(crate) fn route(&mut self, declared: &Declared) -> anyhow::Result<Reload> {
        let backends: BTreeMap<String, u16> = self
            .revisions
            .iter()
            .map(|(r, p)| (r.clone(), p.port))
            .collect();
        self.generation += 1;
        let prefix = self.dir.path().join("ingress");
        let conf = nginx::front_conf(
            declared,
            &backends,
            self.front.port,
            &prefix,
            self.generation,
        )?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(20);
        let old_workers = self.front.reload(&conf)?;
        self.wait_for_generation(deadline)?;
        let live = started.elapsed();
        self.front.wait_for_exit(&old_workers, deadline)?;
        Ok(Reload {
            live,
            old_workers_gone: started.elapsed(),
        })
    }

    /// Each revision's own port (its `/metrics`).
    pub(crate) fn revision_ports(&self) -> BTreeMap<String, u16> {
        self.revisions
            .iter()
            .map(|(r, p)| (r.clone(), p.port))
            .collect()
    }

    /// The ingress' port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.front.port
    }

    /// Waits until nginx answers with the current configuration.
    fn wait_for_generation(&self, deadline: Instant) -> anyhow::Result<()> {
        let probe = scrape::Request {
            method: "GET",
            path: nginx::GENERATION_PATH,
            content_type: None,
            body: "",
        };
        loop {
            if let Ok(r) = scrape::http(self.front.port, &probe)
                && r.status == 200
                && r.body.trim() == self.generation.to_string()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx did not serve configuration {} in time:\n{}",
                    self.generation,
                    self.front.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn spawn_load(&mut self, host: &str, load: Load) -> anyhow::Result<load::Running> {
        self.runs += 1;
        let report = self.dir.path().join(format!("loadtest-{}.json", self.runs));
        load::spawn(&self.setup.loadtest, self.front.port, host, load, &report)
    }

    pub(crate) fn load(&mut self, host: &str, load: Load) -> anyhow::Result<Observed> {
        self.spawn_load(host, load)?.wait()
    }

    /// Load on the Service's host, then on every tag host.
    pub(crate) fn step(
        &mut self,
        declared: &Declared,
        opts: &Options,
        reload: Option<Reload>,
    ) -> anyhow::Result<Step> {
        let observed = self.load(&declared.host(), Load::requests(opts.requests))?;
        let mut tags = Vec::new();
        for r in declared.routes.iter().filter(|r| r.tag.is_some()) {
            let tag = r.tag.clone().expect("filtered on tags");
            let host = declared.tag_host(&tag);
            let observed = self.load(&host, Load::requests(opts.tag_requests))?;
            tags.push(TagCheck {
                tag,
                host,
                revision: r.revision.clone(),
                observed,
            });
        }
        Ok(Step {
            declared: declared.clone(),
            observed,
            tags,
            reload,
            min_requests: opts.requests,
        })
    }
}
