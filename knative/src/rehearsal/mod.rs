//! A rollout rehearsed on one machine, with real processes: the revisions a
//! Knative traffic block names run as local processes of the function's
//! binary (`K_REVISION` = the revision name), a real nginx in front splits
//! the traffic with upstream weights generated from that same traffic block
//! (rendered from the overlay with `kubectl kustomize` and parsed into
//! [`Service`]), every tag answers on its own host like Knative's tag URLs,
//! and the project's load generator measures the split from outside through
//! the `x-revision` header. A rollout step is a new configuration from the
//! next overlay and a graceful `nginx -s reload`.
//!
//! `make rollout-demo` (the `rollout-rehearsal` binary) prints the tables;
//! `knative/tests/rehearsal.rs` holds the same runs to their numbers.

pub mod load;
pub mod nginx;

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bundle::Bundle;
use crate::resources::Service;
use crate::{Problems, kustomize, paths, scrape, tools};
use load::{Load, Observed};

/// The Service whose rollouts the overlays describe.
pub const SERVICE: &str = "ingest-grpc";

/// The canary steps, in the order a rollout applies them (knative/ relative).
pub const CANARY_STEPS: &[&str] = &[
    "overlays/canary/10",
    "overlays/canary/50",
    "overlays/canary/100",
    "overlays/canary/rollback",
];

/// Blue/green: green deployed at 0 % on its tag host, then the switch.
pub const BLUE_GREEN: &str = "overlays/bluegreen/green";
pub const BLUE_GREEN_SWITCH: &str = "overlays/bluegreen/switch";

/// How far an observed share may be from a declared split strictly between
/// 0 % and 100 %, in percentage points. 0 % and 100 % must hold exactly.
pub const TOLERANCE_PP: f64 = 3.0;

/// The command that builds what the rehearsal runs.
pub const BUILD: &str = "cargo build --bins -p ingest -p loadtest";

// ------------------------------------------------------------------ what an overlay declares

/// One entry of a traffic block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub revision: String,
    pub percent: u32,
    pub tag: Option<String>,
}

/// A Service's traffic block as an overlay renders it, with what is needed
/// to serve it: host names and the function binary.
#[derive(Debug, Clone)]
pub struct Declared {
    /// `knative/overlays/canary/10`.
    pub overlay: String,
    pub service: String,
    pub namespace: String,
    pub domain: String,
    /// The function binary the revisions run (the image name's last segment).
    pub function: String,
    pub routes: Vec<Route>,
}

impl Declared {
    /// `service` of the rendered `overlay` (relative to knative/): its traffic block, host names
    /// from its namespace and the domain in knative/platform.
    pub fn load(kubectl: &Path, overlay: &str, service: &str) -> anyhow::Result<Declared> {
        let dir = paths::knative_dir().join(overlay);
        let source = paths::rel(&dir);
        let docs = crate::yaml::documents(&kustomize::render(kubectl, &dir)?)?;
        let bundle = Bundle::new(source.clone(), dir, docs)?;
        let svc = bundle
            .service(service)
            .with_context(|| format!("{source} has no Service {service}"))?;
        Declared::from_service(&source, svc, &domain(kubectl)?)
    }

    pub fn from_service(overlay: &str, svc: &Service, domain: &str) -> anyhow::Result<Declared> {
        let name = &svc.metadata.name;
        let traffic = svc
            .spec
            .traffic
            .as_ref()
            .with_context(|| format!("{overlay}: Service {name} has no traffic block"))?;
        let mut routes = Vec::new();
        for t in traffic {
            let Some(revision) = t.revision_name.clone() else {
                bail!(
                    "{overlay}: Service {name} sends traffic to latestRevision; a rehearsal needs named revisions (revisionName)"
                )
            };
            routes.push(Route {
                revision,
                percent: t.percent.unwrap_or(0),
                tag: t.tag.clone(),
            });
        }
        let sum: u32 = routes.iter().map(|r| r.percent).sum();
        if sum != 100 {
            bail!("{overlay}: Service {name}'s traffic percents sum to {sum}, not 100");
        }
        Ok(Declared {
            overlay: overlay.to_owned(),
            service: name.clone(),
            namespace: svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            domain: domain.to_owned(),
            function: crate::bundle::function_of(svc)
                .with_context(|| format!("{overlay}: Service {name} has no container"))?,
            routes,
        })
    }

    /// `{service}.{namespace}.{domain}`: where the split applies.
    pub fn host(&self) -> String {
        format!("{}.{}.{}", self.service, self.namespace, self.domain)
    }

    /// `{tag}-{service}.{namespace}.{domain}`: the tagged revision alone.
    pub fn tag_host(&self, tag: &str) -> String {
        format!("{tag}-{}", self.host())
    }

    /// Percent per revision (a revision listed twice counts once, summed), in
    /// traffic-block order, 0 % included.
    pub fn split(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for r in &self.routes {
            match out.iter_mut().find(|(rev, _)| *rev == r.revision) {
                Some((_, p)) => *p += r.percent,
                None => out.push((r.revision.clone(), r.percent)),
            }
        }
        out
    }

    /// The revisions with traffic and their percent: nginx upstream weights
    /// (nginx has no weight 0; a 0 % revision is reachable on its tag host only).
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.split().into_iter().filter(|(_, p)| *p > 0).collect()
    }

    /// Every revision named, with or without traffic.
    pub fn revisions(&self) -> Vec<String> {
        self.split().into_iter().map(|(r, _)| r).collect()
    }

    fn tags_of(&self, revision: &str) -> String {
        let tags: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.revision == revision)
            .filter_map(|r| r.tag.as_deref())
            .collect();
        if tags.is_empty() {
            "-".to_owned()
        } else {
            tags.join(",")
        }
    }

    /// `ingest-grpc-v1 90 % (stable), ingest-grpc-v2 10 % (canary)`.
    pub fn describe(&self) -> String {
        self.routes
            .iter()
            .map(|r| match &r.tag {
                Some(t) => format!("{} {} % (tag {t})", r.revision, r.percent),
                None => format!("{} {} %", r.revision, r.percent),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The domain of knative/platform's config-domain (one key).
pub fn domain(kubectl: &Path) -> anyhow::Result<String> {
    let dir = paths::knative_dir().join("platform");
    let docs = crate::yaml::documents(&kustomize::render(kubectl, &dir)?)?;
    let cm = docs
        .iter()
        .find(|d| {
            crate::yaml::type_of(d).1 == "ConfigMap" && crate::yaml::name_of(d) == "config-domain"
        })
        .context("knative/platform has no ConfigMap config-domain")?;
    let domains: Vec<String> = cm["data"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    match domains.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("knative/platform's config-domain should name one domain, not {domains:?}"),
    }
}

// ------------------------------------------------------------------ tools and binaries

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

/// The processes of one rehearsal; all stopped when dropped (nginx first,
/// then the revisions, then the sink).
struct Stage<'s> {
    front: nginx::Nginx,
    revisions: BTreeMap<String, scrape::Running>,
    _sink: nginx::Nginx,
    dir: tempfile::TempDir,
    setup: &'s Setup,
    generation: u64,
    runs: u32,
}

impl<'s> Stage<'s> {
    /// Starts the sink, one process per revision any of `declared` names,
    /// and nginx serving `declared[0]`.
    fn start(setup: &'s Setup, declared: &[Declared]) -> anyhow::Result<Stage<'s>> {
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
                let env: Vec<(String, String)> = [
                    ("K_SERVICE", d.service.as_str()),
                    ("K_CONFIGURATION", d.service.as_str()),
                    ("K_REVISION", rev.as_str()),
                    ("K_SINK", sink_url.as_str()),
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
    fn route(&mut self, declared: &Declared) -> anyhow::Result<Reload> {
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

    fn spawn_load(&mut self, host: &str, load: Load) -> anyhow::Result<load::Running> {
        self.runs += 1;
        let report = self.dir.path().join(format!("loadtest-{}.json", self.runs));
        load::spawn(&self.setup.loadtest, self.front.port, host, load, &report)
    }

    fn load(&mut self, host: &str, load: Load) -> anyhow::Result<Observed> {
        self.spawn_load(host, load)?.wait()
    }

    /// Load on the Service's host, then on every tag host.
    fn step(
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

// ------------------------------------------------------------------ the rehearsals

/// How much load each part sends.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests on the Service's host per step.
    pub requests: u64,
    /// Requests on each tag host per step.
    pub tag_requests: u64,
    /// How long the load runs across the blue/green switch (the reload comes at a third of it).
    pub switch_load: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            requests: 2000,
            tag_requests: 200,
            switch_load: Duration::from_secs(6),
        }
    }
}

/// The canary steps `overlays` (knative/ relative) one after another: each
/// step's nginx configuration comes from its overlay's traffic block, loaded
/// with `nginx -s reload`.
pub fn canary(setup: &Setup, overlays: &[&str], opts: &Options) -> anyhow::Result<Vec<Step>> {
    let declared: Vec<Declared> = overlays
        .iter()
        .map(|o| Declared::load(&setup.kubectl, o, SERVICE))
        .collect::<anyhow::Result<_>>()?;
    let mut stage = Stage::start(setup, &declared)?;
    let mut steps = Vec::new();
    for (i, d) in declared.iter().enumerate() {
        let reload = if i == 0 { None } else { Some(stage.route(d)?) };
        steps.push(stage.step(d, opts, reload)?);
    }
    Ok(steps)
}

/// Blue/green: `green` (blue 100 %, green 0 % on its tag host) is checked,
/// then load runs while nginx is reloaded with the traffic block of
/// `switch`, then the switched routes are checked.
pub fn blue_green(
    setup: &Setup,
    green: &str,
    switch: &str,
    opts: &Options,
) -> anyhow::Result<BlueGreen> {
    let before = Declared::load(&setup.kubectl, green, SERVICE)?;
    let after = Declared::load(&setup.kubectl, switch, SERVICE)?;
    if before.host() != after.host() {
        bail!(
            "{} and {} serve different hosts",
            before.overlay,
            after.overlay
        );
    }
    let mut stage = Stage::start(setup, &[before.clone(), after.clone()])?;
    let before_step = stage.step(&before, opts, None)?;

    let running = stage.spawn_load(&before.host(), Load::lasting(opts.switch_load))?;
    let load_started = Instant::now();
    std::thread::sleep(opts.switch_load / 3);
    let reload_at = load_started.elapsed();
    let reload = stage.route(&after);
    let observed = running.wait()?;
    let switch = Switch {
        from: before.clone(),
        to: after.clone(),
        observed,
        reload_at,
        reload: reload?,
    };

    let after_step = stage.step(&after, opts, None)?;
    Ok(BlueGreen {
        before: before_step,
        switch,
        after: after_step,
    })
}

// ------------------------------------------------------------------ results

/// How a `nginx -s reload` went, from the moment it was sent.
#[derive(Debug, Clone, Copy)]
pub struct Reload {
    /// The new workers answer.
    pub live: Duration,
    /// The old workers have exited: no connection gets the old routes any more.
    pub old_workers_gone: Duration,
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "new workers answering in {} ms, old workers gone in {} ms",
            self.live.as_millis(),
            self.old_workers_gone.as_millis()
        )
    }
}

/// A tag host's run: every response should come from the tagged revision.
#[derive(Debug, Clone)]
pub struct TagCheck {
    pub tag: String,
    pub host: String,
    pub revision: String,
    pub observed: Observed,
}

/// One traffic block served and measured.
#[derive(Debug, Clone)]
pub struct Step {
    pub declared: Declared,
    pub observed: Observed,
    pub tags: Vec<TagCheck>,
    /// The reload into this step (None: nginx started with it).
    pub reload: Option<Reload>,
    pub min_requests: u64,
}

/// A row of a split table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub revision: String,
    pub tags: String,
    pub declared: f64,
    pub observed: f64,
}

impl Row {
    pub fn difference(&self) -> f64 {
        self.observed - self.declared
    }
}

impl Step {
    /// Declared and observed percent per revision, plus any revision that
    /// answered without being declared (and responses without `x-revision`).
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .declared
            .split()
            .into_iter()
            .map(|(rev, p)| Row {
                tags: self.declared.tags_of(&rev),
                observed: self.observed.percent(&rev),
                revision: rev,
                declared: p as f64,
            })
            .collect();
        for (rev, n) in &self.observed.by_revision {
            let name = rev.clone().unwrap_or_else(|| "(no x-revision)".to_owned());
            if rows.iter().any(|r| r.revision == name) {
                continue;
            }
            let observed = if self.observed.requests == 0 {
                0.0
            } else {
                100.0 * *n as f64 / self.observed.requests as f64
            };
            rows.push(Row {
                revision: name,
                tags: "-".to_owned(),
                declared: 0.0,
                observed,
            });
        }
        rows
    }

    /// What does not hold: too few requests, a failure, a share off by more
    /// than [`TOLERANCE_PP`] (or at all, for 0 % and 100 %), a tag host
    /// answering from another revision.
    pub fn problems(&self) -> Problems {
        let mut p = Problems::new();
        let at = format!("{} ({})", self.declared.overlay, self.declared.host());
        if self.observed.requests < self.min_requests {
            p.push(format!(
                "{at}: {} requests, fewer than the {} asked for",
                self.observed.requests, self.min_requests
            ));
        }
        if self.observed.failed > 0 {
            p.push(format!(
                "{at}: {} of {} requests failed ({})",
                self.observed.failed,
                self.observed.requests,
                self.observed.outcomes_text()
            ));
        }
        for r in self.rows() {
            let exact = r.declared == 0.0 || r.declared == 100.0;
            let off = r.difference().abs();
            if (exact && off > 0.0) || off > TOLERANCE_PP {
                let rule = if exact {
                    "0 % and 100 % must hold exactly".to_owned()
                } else {
                    format!("more than {TOLERANCE_PP} percentage points off")
                };
                p.push(format!(
                    "{at}: {} declared {:.0} %, observed {:.2} % ({rule})",
                    r.revision, r.declared, r.observed
                ));
            }
        }
        for t in &self.tags {
            if t.observed.failed > 0
                || t.observed.requests == 0
                || t.observed.responses_from(&t.revision) != t.observed.requests
            {
                p.push(format!(
                    "{}: tag host {} should answer from {} only; observed {} requests: {} ({})",
                    self.declared.overlay,
                    t.host,
                    t.revision,
                    t.observed.requests,
                    revisions_text(&t.observed),
                    t.observed.outcomes_text()
                ));
            }
        }
        p
    }
}

fn revisions_text(o: &Observed) -> String {
    o.by_revision
        .iter()
        .map(|(r, n)| format!("{} {n}", r.as_deref().unwrap_or("(no x-revision)")))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.declared;
        writeln!(
            f,
            "{}  (Service {}, host {})",
            d.overlay,
            d.service,
            d.host()
        )?;
        let reload = match self.reload {
            Some(r) => format!(", after nginx -s reload ({r})"),
            None => String::new(),
        };
        writeln!(
            f,
            "  {} requests, {} failed, {:.1} s{reload}",
            self.observed.requests, self.observed.failed, self.observed.duration_s
        )?;
        let rows = self.rows();
        let w = rows
            .iter()
            .map(|r| r.revision.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let tw = rows.iter().map(|r| r.tags.len()).max().unwrap_or(3).max(3);
        writeln!(
            f,
            "  {:<w$}  {:<tw$}  {:>9}  {:>9}  {:>11}",
            "revision", "tag", "declared", "observed", "difference"
        )?;
        for r in &rows {
            writeln!(
                f,
                "  {:<w$}  {:<tw$}  {:>7.2} %  {:>7.2} %  {:>+8.2} pp",
                r.revision,
                r.tags,
                r.declared,
                r.observed,
                r.difference()
            )?;
        }
        for t in &self.tags {
            writeln!(
                f,
                "  tag host {} -> {}: {} of {} requests ({} failed)",
                t.host,
                t.revision,
                t.observed.responses_from(&t.revision),
                t.observed.requests,
                t.observed.failed
            )?;
        }
        Ok(())
    }
}

/// Load running while nginx switches from one traffic block to another.
#[derive(Debug, Clone)]
pub struct Switch {
    pub from: Declared,
    pub to: Declared,
    pub observed: Observed,
    /// When the reload was sent, from the start of the load.
    pub reload_at: Duration,
    pub reload: Reload,
}

impl Switch {
    /// Every request answered, and the load spanned the switch: responses
    /// came from a revision only the old block routes to and from one only
    /// the new block routes to. Nothing came from a revision neither routes to.
    pub fn problems(&self) -> Problems {
        let mut p = Problems::new();
        let at = format!("switch {} -> {}", self.from.overlay, self.to.overlay);
        let o = &self.observed;
        if o.requests == 0 || o.failed > 0 {
            p.push(format!(
                "{at}: {} of {} requests failed across the reload ({})",
                o.failed,
                o.requests,
                o.outcomes_text()
            ));
        }
        let old: Vec<String> = self.from.weights().into_iter().map(|(r, _)| r).collect();
        let new: Vec<String> = self.to.weights().into_iter().map(|(r, _)| r).collect();
        let old_only: Vec<&String> = old.iter().filter(|r| !new.contains(r)).collect();
        let new_only: Vec<&String> = new.iter().filter(|r| !old.contains(r)).collect();
        if !old_only.is_empty() && old_only.iter().all(|r| o.responses_from(r) == 0) {
            p.push(format!(
                "{at}: no response from {old_only:?} before the switch: the load did not span it"
            ));
        }
        if !new_only.is_empty() && new_only.iter().all(|r| o.responses_from(r) == 0) {
            p.push(format!("{at}: no response from {new_only:?} after the switch: the reload did not take effect under load"));
        }
        for (rev, n) in &o.by_revision {
            if !rev
                .as_ref()
                .is_some_and(|r| old.contains(r) || new.contains(r))
            {
                p.push(format!(
                    "{at}: {n} responses from {}, which neither traffic block routes to",
                    rev.as_deref().unwrap_or("(no x-revision)")
                ));
            }
        }
        p
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.observed;
        writeln!(
            f,
            "switch under load: {} -> {}  (host {})",
            self.from.overlay,
            self.to.overlay,
            self.to.host()
        )?;
        writeln!(
            f,
            "  {} requests in {:.1} s, {} failed ({}); nginx -s reload at {:.1} s ({})",
            o.requests,
            o.duration_s,
            o.failed,
            o.outcomes_text(),
            self.reload_at.as_secs_f64(),
            self.reload
        )?;
        writeln!(f, "  responses by revision: {}", revisions_text(o))
    }
}

/// The blue/green rehearsal: before the switch, across it, after it.
#[derive(Debug, Clone)]
pub struct BlueGreen {
    pub before: Step,
    pub switch: Switch,
    pub after: Step,
}

impl BlueGreen {
    pub fn problems(&self) -> Problems {
        let mut p = self.before.problems();
        p.extend(self.switch.problems());
        p.extend(self.after.problems());
        p
    }
}

impl fmt::Display for BlueGreen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.before)?;
        writeln!(f, "{}", self.switch)?;
        write!(f, "{}", self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(traffic: &str) -> Declared {
        let svc: Service = serde_yaml::from_str(&format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n  template:\n    spec:\n      containers:\n        - name: f\n          image: dev.local/x/ingest:0.2.0\n  traffic:\n{traffic}"
        ))
        .unwrap();
        Declared::from_service("knative/overlays/x", &svc, "example.com").unwrap()
    }

    #[test]
    fn weights_hosts_and_tags_come_from_the_traffic_block() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        assert_eq!(d.function, "ingest");
        assert_eq!(d.host(), "s.ns.example.com");
        assert_eq!(d.tag_host("blue"), "blue-s.ns.example.com");
        assert_eq!(d.weights(), vec![("s-v2".to_owned(), 100)]);
        assert_eq!(d.revisions(), vec!["s-v1".to_owned(), "s-v2".to_owned()]);

        let backends = BTreeMap::from([("s-v1".to_owned(), 7001), ("s-v2".to_owned(), 7002)]);
        let conf = nginx::front_conf(&d, &backends, 7000, Path::new("/p"), 3).unwrap();
        assert!(
            conf.contains("upstream s {\n        server 127.0.0.1:7002 weight=100;  # s-v2\n"),
            "{conf}"
        );
        assert!(
            !conf.contains("7001 weight"),
            "a 0 % revision gets no weight: {conf}"
        );
        assert!(
            conf.contains("upstream s__tag_blue {\n        server 127.0.0.1:7001;"),
            "{conf}"
        );
        assert!(conf.contains("server_name blue-s.ns.example.com;\n        location / { proxy_pass http://s__tag_blue; }"), "{conf}");
        assert!(
            conf.contains(
                "server_name s.ns.example.com;\n        location / { proxy_pass http://s; }"
            ),
            "{conf}"
        );
        assert!(conf.contains("return 200 \"3\\n\""), "{conf}");
        assert!(conf.contains("keepalive_timeout 0;"), "{conf}");
    }

    #[test]
    fn a_split_is_weighted_by_percent() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 90, tag: stable}\n    - {revisionName: s-v2, percent: 10, tag: canary}\n",
        );
        let backends = BTreeMap::from([("s-v1".to_owned(), 7001), ("s-v2".to_owned(), 7002)]);
        let conf = nginx::front_conf(&d, &backends, 7000, Path::new("/p"), 1).unwrap();
        assert!(
            conf.contains("server 127.0.0.1:7001 weight=90;")
                && conf.contains("server 127.0.0.1:7002 weight=10;"),
            "{conf}"
        );
        let missing =
            nginx::front_conf(&d, &BTreeMap::new(), 7000, Path::new("/p"), 1).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("no local process runs revision s-v1"),
            "{missing}"
        );
    }

    #[test]
    fn latest_revision_and_bad_sums_are_refused() {
        let svc = |traffic: &str| -> Service {
            serde_yaml::from_str(&format!(
                "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n        - name: f\n          image: i\n  traffic:\n{traffic}"
            ))
            .unwrap()
        };
        let e = Declared::from_service(
            "o",
            &svc("    - {latestRevision: true, percent: 100}\n"),
            "d",
        )
        .unwrap_err();
        assert!(e.to_string().contains("latestRevision"), "{e}");
        let e = Declared::from_service("o", &svc("    - {revisionName: a, percent: 90}\n"), "d")
            .unwrap_err();
        assert!(e.to_string().contains("sum to 90"), "{e}");
    }

    fn observed(requests: u64, failed: u64, by: &[(&str, u64)]) -> Observed {
        Observed {
            requests,
            failed,
            by_revision: by.iter().map(|(r, n)| (Some(r.to_string()), *n)).collect(),
            ..Observed::default()
        }
    }

    #[test]
    fn a_step_holds_splits_within_the_tolerance_and_extremes_exactly() {
        let d = declared(
            "    - {revisionName: s-v1, percent: 90, tag: stable}\n    - {revisionName: s-v2, percent: 10, tag: canary}\n",
        );
        let step = |o: Observed| Step {
            declared: d.clone(),
            observed: o,
            tags: vec![],
            reload: None,
            min_requests: 2000,
        };
        assert!(
            step(observed(2000, 0, &[("s-v1", 1820), ("s-v2", 180)]))
                .problems()
                .is_empty()
        );
        let off = step(observed(2000, 0, &[("s-v1", 1700), ("s-v2", 300)])).problems();
        assert!(
            off.iter()
                .any(|p| p.contains("s-v2 declared 10 %, observed 15.00 %")),
            "{off:?}"
        );
        let few = step(observed(100, 0, &[("s-v1", 90), ("s-v2", 10)])).problems();
        assert!(
            few.iter().any(|p| p.contains("fewer than the 2000")),
            "{few:?}"
        );
        let stray = step(observed(
            2000,
            0,
            &[("s-v1", 1800), ("s-v2", 199), ("s-v3", 1)],
        ))
        .problems();
        assert!(
            stray.iter().any(|p| p.contains("s-v3 declared 0 %")),
            "{stray:?}"
        );

        let all = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        let s = Step {
            declared: all,
            observed: observed(2000, 0, &[("s-v2", 1999), ("s-v1", 1)]),
            tags: vec![],
            reload: None,
            min_requests: 1,
        };
        assert!(
            s.problems().iter().any(|p| p.contains("must hold exactly")),
            "{:?}",
            s.problems()
        );
    }

    #[test]
    fn a_switch_must_lose_nothing_and_span_the_reload() {
        let from = declared(
            "    - {revisionName: s-v1, percent: 100, tag: blue}\n    - {revisionName: s-v2, percent: 0, tag: green}\n",
        );
        let to = declared(
            "    - {revisionName: s-v1, percent: 0, tag: blue}\n    - {revisionName: s-v2, percent: 100, tag: green}\n",
        );
        let switch = |o: Observed| Switch {
            from: from.clone(),
            to: to.clone(),
            observed: o,
            reload_at: Duration::ZERO,
            reload: Reload {
                live: Duration::ZERO,
                old_workers_gone: Duration::ZERO,
            },
        };
        assert!(
            switch(observed(100, 0, &[("s-v1", 40), ("s-v2", 60)]))
                .problems()
                .is_empty()
        );
        assert!(
            switch(observed(100, 1, &[("s-v1", 40), ("s-v2", 59)]))
                .problems()
                .iter()
                .any(|p| p.contains("1 of 100 requests failed"))
        );
        assert!(
            switch(observed(100, 0, &[("s-v2", 100)]))
                .problems()
                .iter()
                .any(|p| p.contains("did not span"))
        );
        assert!(
            switch(observed(100, 0, &[("s-v1", 100)]))
                .problems()
                .iter()
                .any(|p| p.contains("did not take effect"))
        );
    }
}
