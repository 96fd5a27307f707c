//! A Dockerfile reader (parser directives, comments, line continuations,
//! JSON and shell forms) and the static checks of the project's one
//! multi-function Dockerfile.

use std::collections::{BTreeMap, BTreeSet};

use crate::Problems;

#[derive(Debug, Clone)]
pub struct Instruction {
    /// 1-based line where it starts.
    pub line: usize,
    /// Upper-cased: FROM, RUN, COPY...
    pub keyword: String,
    pub args: String,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub image: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, Default)]
pub struct Dockerfile {
    /// `# name=value` parser directives at the top (`syntax`, `escape`).
    pub directives: BTreeMap<String, String>,
    /// ARGs before the first FROM: name -> default.
    pub global_args: BTreeMap<String, Option<String>>,
    pub stages: Vec<Stage>,
}

pub fn parse(text: &str) -> anyhow::Result<Dockerfile> {
    let mut df = Dockerfile::default();
    let mut in_directives = true;
    let mut pending: Option<(usize, String)> = None;
    let mut instructions = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if in_directives {
            if let Some(d) = trimmed.strip_prefix('#')
                && let Some((k, v)) = d.trim().split_once('=')
                && !k.trim().contains(' ')
            {
                df.directives
                    .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                continue;
            }
            in_directives = false;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let acc = acc.trim().to_owned();
        if acc.is_empty() {
            continue;
        }
        let (kw, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        instructions.push(Instruction {
            line: start,
            keyword: kw.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    if let Some((line, _)) = pending {
        anyhow::bail!("line {line}: a continued instruction never ends");
    }
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (image, name) = match words.as_slice() {
                [image] => (*image, None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (*image, Some(name.to_string()))
                }
                _ => anyhow::bail!(
                    "line {}: FROM {} is not `FROM image [AS name]`",
                    ins.line,
                    ins.args
                ),
            };
            df.stages.push(Stage {
                image: image.to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = df.stages.last_mut() {
            stage.instructions.push(ins);
        } else if ins.keyword == "ARG" {
            let (k, v) = split_arg(&ins.args);
            df.global_args.insert(k, v);
        } else {
            anyhow::bail!("line {}: {} before the first FROM", ins.line, ins.keyword);
        }
    }
    Ok(df)
}

fn split_arg(args: &str) -> (String, Option<String>) {
    match args.split_once('=') {
        Some((k, v)) => (
            k.trim().to_owned(),
            Some(v.trim().trim_matches('"').to_owned()),
        ),
        None => (args.trim().to_owned(), None),
    }
}

/// An instruction in exec (JSON array) form, as its words.
pub fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str(args).ok()
}

impl Dockerfile {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// `${VAR}` / `$VAR` in `s` replaced by the global ARG defaults (and `extra`).
    pub fn substitute(&self, s: &str, extra: &BTreeMap<String, String>) -> String {
        let mut out = s.to_owned();
        let vars = self
            .global_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .chain(extra.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect::<BTreeMap<_, _>>();
        for (k, v) in vars {
            out = out
                .replace(&format!("${{{k}}}"), &v)
                .replace(&format!("${k}"), &v);
        }
        out
    }
}

impl Stage {
    pub fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        let keyword = keyword.to_owned();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }
}

/// An image reference pinned by tag (not `latest`) or digest.
pub fn is_pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

/// What the checks need from outside the Dockerfile.
pub struct Context<'a> {
    /// Binaries of the workspace (cargo metadata).
    pub binaries: &'a BTreeSet<String>,
    /// The workspace's `rust-version` (major, minor).
    pub rust_version: (u32, u32),
    /// Build-arg sets the bake file passes (one map per target).
    pub bake_args: &'a [BTreeMap<String, String>],
}

pub fn check(df: &Dockerfile, cx: &Context) -> Problems {
    let mut p = Problems::new();
    if df.stages.len() < 2 {
        p.push("a build stage and a runtime stage are expected".into());
        return p;
    }
    let uses_mounts = df
        .stages
        .iter()
        .flat_map(|s| s.all("RUN"))
        .any(|r| r.args.contains("--mount="));
    if uses_mounts
        && !df
            .directives
            .get("syntax")
            .is_some_and(|s| s.starts_with("docker/dockerfile:1"))
    {
        p.push("RUN --mount needs `# syntax=docker/dockerfile:1` as the first line".into());
    }
    let stage_names: BTreeSet<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    // Base images: pinned, or an earlier stage (also after build-arg substitution).
    let mut arg_sets: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    arg_sets.extend(cx.bake_args.iter().cloned());
    for (i, stage) in df.stages.iter().enumerate() {
        for args in &arg_sets {
            let image = df.substitute(&stage.image, args);
            let earlier = df.stages[..i]
                .iter()
                .any(|s| s.name.as_deref() == Some(image.as_str()));
            if image.contains('$') {
                p.push(format!("FROM {}: ${{...}} without a default", stage.image));
            } else if stage_names.contains(image.as_str()) && !earlier {
                p.push(format!(
                    "FROM {image}: a stage can only build on an earlier one"
                ));
            } else if !earlier && !is_pinned(&image) {
                p.push(format!(
                    "FROM {image}: pin the base image by tag (not latest) or digest"
                ));
            }
        }
    }
    // The FUNCTION argument names a real binary, by default and in every bake target.
    let function_default = df.global_args.get("FUNCTION").cloned().flatten();
    match &function_default {
        Some(f) if cx.binaries.contains(f) => {}
        Some(f) => p.push(format!(
            "ARG FUNCTION={f} is not a binary of the workspace ({:?})",
            cx.binaries
        )),
        None => {
            p.push("ARG FUNCTION=<binary> with a default is expected before the first FROM".into())
        }
    }
    for args in cx.bake_args {
        match args.get("FUNCTION") {
            Some(f) if cx.binaries.contains(f) => {}
            Some(f) => p.push(format!(
                "the bake file builds FUNCTION={f}, which is not a binary of the workspace"
            )),
            None => p.push("a bake target without a FUNCTION argument".into()),
        }
    }
    // The build stage: the official Rust image, new enough; cached cargo build of one binary.
    let Some(build) = df
        .stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.args.contains("cargo build")))
    else {
        p.push("no stage runs cargo build".into());
        return p;
    };
    match build.image.strip_prefix("rust:").and_then(|t| {
        let mut it = t.split(['-', '.']);
        Some((
            it.next()?.parse::<u32>().ok()?,
            it.next()?.parse::<u32>().ok()?,
        ))
    }) {
        Some(v) if v >= cx.rust_version => {}
        Some(v) => p.push(format!(
            "FROM {}: Rust {}.{} is older than the workspace's rust-version {}.{}",
            build.image, v.0, v.1, cx.rust_version.0, cx.rust_version.1
        )),
        None => p.push(format!(
            "FROM {}: build on the official image rust:<major.minor>-<debian>",
            build.image
        )),
    }
    let runs: Vec<&str> = build.all("RUN").map(|r| r.args.as_str()).collect();
    let cargo = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .copied()
        .unwrap_or_default();
    for needle in [
        "--profile dist",
        "--locked",
        "--mount=type=cache,target=/usr/local/cargo/registry",
    ] {
        if !cargo.contains(needle) {
            p.push(format!("cargo build should use {needle}"));
        }
    }
    if !(cargo.contains("--bin \"$FUNCTION\"") || cargo.contains("--bin \"${FUNCTION}\"")) {
        p.push("cargo build should build exactly --bin \"$FUNCTION\"".into());
    }
    if !cargo.contains("--mount=type=cache,target=") || !cargo.contains("/target") {
        p.push("cache the target directory with a BuildKit cache mount".into());
    }
    // The runtime stage: distroless, numeric non-root USER, exec-form ENTRYPOINT of a copied binary.
    let runtime = df.stages.last().expect("two stages or more");
    if !runtime.image.starts_with("gcr.io/distroless/cc-debian12") {
        p.push(format!("the final stage runs on {}; gcr.io/distroless/cc-debian12 has glibc, libgcc and CA certificates", runtime.image));
    }
    match runtime.all("USER").last() {
        Some(u) => {
            let uid = u.args.split(':').next().unwrap_or_default();
            match uid.parse::<u32>() {
                Ok(0) => p.push("USER 0 is root".into()),
                Ok(_) => {}
                Err(_) => p.push(format!(
                    "USER {}: use a numeric uid so Kubernetes' runAsNonRoot can verify it",
                    u.args
                )),
            }
        }
        None => p.push("the final stage needs a non-root USER".into()),
    }
    let entry = runtime
        .all("ENTRYPOINT")
        .last()
        .and_then(|e| exec_form(&e.args));
    match entry.as_deref() {
        Some([path, ..]) => {
            let copied = runtime.all("COPY").any(|c| {
                c.args
                    .contains(&format!("--from={}", build.name.as_deref().unwrap_or("")))
                    && c.args.split_whitespace().last() == Some(path.as_str())
            });
            if !copied {
                p.push(format!(
                    "ENTRYPOINT {path} is not the binary copied from the build stage"
                ));
            }
            let copy_src = runtime
                .all("COPY")
                .find(|c| c.args.split_whitespace().last() == Some(path.as_str()))
                .and_then(|c| c.args.split_whitespace().rev().nth(1).map(str::to_owned));
            if let Some(src) = copy_src
                && (!cargo.contains(&src) || !cargo.contains("target/dist/$FUNCTION"))
            {
                p.push(format!("{src} (copied to {path}) must be target/dist/$FUNCTION installed by the cargo build step"));
            }
        }
        _ => p.push("ENTRYPOINT must be in exec form: [\"/path/to/binary\"]".into()),
    }
    if runtime.all("RUN").next().is_some() {
        p.push("the distroless runtime stage has no shell: no RUN there".into());
    }
    if df
        .stages
        .iter()
        .flat_map(|s| s.all("ADD"))
        .any(|a| a.args.contains("://"))
    {
        p.push(
            "ADD <url> fetches unpinned content at build time; download in a RUN with a checksum"
                .into(),
        );
    }
    p
}

/// `FUNCTION`-style build args of every target in a bake file (HCL, read
/// line by line: `args = { FUNCTION = "x", ASSETS = "y" }`).
pub fn bake_args(hcl: &str) -> Vec<BTreeMap<String, String>> {
    hcl.lines()
        .filter_map(|l| {
            let l = l.trim();
            let inner = l
                .strip_prefix("args")?
                .trim_start()
                .strip_prefix('=')?
                .trim();
            let inner = inner.strip_prefix('{')?.strip_suffix('}')?;
            Some(
                inner
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# syntax=docker/dockerfile:1\nARG FUNCTION=ingest\nFROM rust:1.95-bookworm AS build\nARG FUNCTION\n\
        RUN --mount=type=cache,target=/usr/local/cargo/registry \\\n    --mount=type=cache,target=/src/target \\\n    \
        cargo build --locked --profile dist --bin \"$FUNCTION\" && install -D target/dist/$FUNCTION /out/function\n\
        FROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=build /out/function /usr/local/bin/function\nUSER 65532:65532\n\
        ENTRYPOINT [\"/usr/local/bin/function\"]\n";

    fn problems(text: &str) -> Problems {
        let bins = BTreeSet::from(["ingest".to_owned()]);
        check(
            &parse(text).unwrap(),
            &Context {
                binaries: &bins,
                rust_version: (1, 88),
                bake_args: &[],
            },
        )
    }

    #[test]
    fn the_reference_passes() {
        assert!(problems(GOOD).is_empty(), "{:?}", problems(GOOD));
    }

    #[test]
    fn an_unpinned_base_fails() {
        let p = problems(&GOOD.replace("cc-debian12:nonroot", "cc-debian12"));
        assert!(p.iter().any(|m| m.contains("pin")), "{p:?}");
    }

    #[test]
    fn a_named_user_fails() {
        let p = problems(&GOOD.replace("USER 65532:65532", "USER nonroot"));
        assert!(p.iter().any(|m| m.contains("numeric")), "{p:?}");
    }

    #[test]
    fn an_unknown_binary_fails() {
        let p = problems(&GOOD.replace("FUNCTION=ingest", "FUNCTION=ingester"));
        assert!(p.iter().any(|m| m.contains("ingester")), "{p:?}");
    }

    #[test]
    fn bake_args_are_read() {
        let a = bake_args(
            "target \"x\" {\n  args = { FUNCTION = \"dashboard-api\", ASSETS = \"dashboard\" }\n}\n",
        );
        assert_eq!(a[0]["FUNCTION"], "dashboard-api");
        assert_eq!(a[0]["ASSETS"], "dashboard");
    }
}
