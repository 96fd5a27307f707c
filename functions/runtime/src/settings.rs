//! A function declares itself once: its name, its configuration as a table
//! of environment variables (name, default, meaning), and its routes. The
//! runtime reads the tables (`main`, `testing::spawn`), the README's tables
//! and the Knative catalogue are checked against them, and a variable read
//! without being declared stops the function at start-up.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::str::FromStr;

use crate::{Config, Context, Routes};

/// What a function reads when a variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// This value, right on a laptop and on a cluster.
    Value(&'static str),
    /// This value, right on one machine only (a loopback address, a path in
    /// the source tree): every Service must set the variable.
    Local(&'static str),
    /// Unset has a meaning of its own (a feature is off): the meaning says which.
    Unset,
    /// Worked out from other variables, as this text says.
    Computed(&'static str),
    /// No default: the function refuses to start without it (unless its
    /// meaning says otherwise).
    Required,
}

/// Who sets a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    /// The person deploying the function.
    User,
    /// Knative Serving, Kubernetes or AWS Lambda: never set it by hand.
    Platform,
    /// A SinkBinding or a source injects it (`K_SINK`, `K_CE_OVERRIDES`).
    Binding,
}

/// One environment variable a function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub default: Default,
    /// One line for the README: what the variable does.
    pub meaning: &'static str,
    pub set_by: SetBy,
    /// Carries a credential: on a cluster, only ever from a Secret.
    pub secret: bool,
    /// Read only when another variable has this value (ingest's route).
    pub when: Option<(&'static str, &'static str)>,
}

impl Var {
    pub const fn new(name: &'static str, default: Default, meaning: &'static str) -> Var {
        Var {
            name,
            default,
            meaning,
            set_by: SetBy::User,
            secret: false,
            when: None,
        }
    }

    pub const fn secret(self) -> Var {
        Var {
            secret: true,
            ..self
        }
    }

    pub const fn set_by(self, set_by: SetBy) -> Var {
        Var { set_by, ..self }
    }

    /// The same variable, read only when `var` is `value`.
    pub const fn when(self, var: &'static str, value: &'static str) -> Var {
        Var {
            when: Some((var, value)),
            ..self
        }
    }

    /// The same variable (declared once elsewhere) as one function uses it.
    pub const fn used_as(self, default: Default, meaning: &'static str) -> Var {
        Var {
            default,
            meaning,
            ..self
        }
    }

    /// The README's "default" cell.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::Value(v) | Default::Local(v) => format!("`{v}`"),
            Default::Unset => "unset".to_owned(),
            Default::Computed(text) => text.to_owned(),
            Default::Required => "required".to_owned(),
        }
    }
}

/// A function's configuration: the variables it reads, and how.
pub trait Settings: Sized + std::fmt::Debug {
    /// Every variable `read` looks at. Reading one not listed here (or in
    /// the runtime's [`Config::VARS`]) stops the function at start-up.
    const VARS: &'static [Var];

    /// Reads the function's variables; `runtime` is what the runtime read
    /// first (its `K_SINK`, `K_REVISION`, body limit...), never read twice.
    fn read(env: &Env, runtime: &Config) -> anyhow::Result<Self>;
}

/// A function: its name, its configuration and its routes.
pub trait Function {
    /// The binary's name and the default `K_SERVICE`.
    const NAME: &'static str;
    type Config: Settings + Send + 'static;
    fn routes(ctx: Context, config: Self::Config) -> impl Future<Output = anyhow::Result<Routes>>;
}

/// The runtime's and `F`'s configuration, read in one pass through `lookup`.
pub fn read<F: Function>(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(Config, F::Config)> {
    let env = Env::new(lookup, &[Config::VARS, F::Config::VARS]);
    let both = Config::read(F::NAME, &env)
        .and_then(|runtime| Ok((F::Config::read(&env, &runtime)?, runtime)));
    env.undeclared(F::NAME)?;
    let (own, runtime) = both?;
    Ok((runtime, own))
}

/// The environment, as the declared variables see it.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    declared: BTreeSet<&'static str>,
    undeclared: RefCell<BTreeSet<String>>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>, tables: &[&'static [Var]]) -> Env<'a> {
        Env {
            lookup,
            declared: tables
                .iter()
                .flat_map(|t| t.iter().map(|v| v.name))
                .collect(),
            undeclared: RefCell::default(),
        }
    }

    /// The raw value of `name` (blank counts as unset). For parsers that
    /// take a lookup (`auth`); they must read declared variables only.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if !self.declared.contains(name) {
            self.undeclared.borrow_mut().insert(name.to_owned());
        }
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The trimmed value of `var`, if set.
    pub fn raw(&self, var: &Var) -> Option<String> {
        self.lookup(var.name).map(|v| v.trim().to_owned())
    }

    /// `var` parsed, or its declared default parsed when unset.
    pub fn parse<T: FromStr>(&self, var: &Var) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let default = match var.default {
            Default::Value(d) | Default::Local(d) => d,
            // A declaration mistake, caught by any test that starts the function.
            _ => anyhow::bail!(
                "{} has no default value to parse: read it with Env::optional",
                var.name
            ),
        };
        match self.raw(var) {
            Some(raw) => parse_value(var, &raw),
            None => default.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{}'s declared default {default:?} is not valid: {e}",
                    var.name
                )
            }),
        }
    }

    /// `var` parsed, `None` when unset.
    pub fn optional<T: FromStr>(&self, var: &Var) -> anyhow::Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.raw(var).map(|raw| parse_value(var, &raw)).transpose()
    }

    /// Fails naming every variable that was read without being declared.
    fn undeclared(&self, function: &str) -> anyhow::Result<()> {
        let names = self.undeclared.borrow();
        if names.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        anyhow::bail!(
            "{function} reads {} without declaring it: add it to the function's Settings::VARS (its config.rs) and to the README",
            names.join(", ")
        )
    }
}

fn parse_value<T: FromStr>(var: &Var, raw: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e| {
        let default = match var.default {
            Default::Value(d) | Default::Local(d) => format!("; unset, it is {d}"),
            _ => String::new(),
        };
        anyhow::anyhow!(
            "{}={raw:?} is not valid: {e} ({}{default})",
            var.name,
            var.meaning
        )
    })
}

/// A README table (`| variable | default | meaning |`) of `vars`.
pub fn markdown_table(vars: &[Var]) -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in vars {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            v.name,
            v.default_text(),
            v.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNT: Var = Var::new(
        "WRITE_BATCH_MAX",
        Default::Value("1000"),
        "most cases in one bulk insert",
    );
    const NAME: Var = Var::new(
        "CONSUMER_NAME",
        Default::Computed("`<K_REVISION>-<host>`"),
        "its name",
    );

    fn env_of<'a>(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env::new(lookup, &[&[COUNT, NAME]])
    }

    #[test]
    fn a_bad_value_names_the_variable_and_its_default() {
        let lookup = |k: &str| (k == "WRITE_BATCH_MAX").then(|| "abc".to_owned());
        let err = env_of(&lookup)
            .parse::<usize>(&COUNT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("WRITE_BATCH_MAX=\"abc\""), "{err}");
        assert!(err.contains("unset, it is 1000"), "{err}");
    }

    #[test]
    fn unset_and_blank_take_the_declared_default() {
        let lookup = |k: &str| (k == "WRITE_BATCH_MAX").then(|| "  ".to_owned());
        let env = env_of(&lookup);
        assert_eq!(env.parse::<usize>(&COUNT).unwrap(), 1000);
        assert_eq!(env.optional::<String>(&NAME).unwrap(), None);
    }

    #[test]
    fn reading_an_undeclared_variable_is_an_error() {
        let lookup = |_: &str| None;
        let env = env_of(&lookup);
        env.parse::<usize>(&COUNT).unwrap();
        assert!(env.undeclared("f").is_ok());
        env.lookup("NOT_DECLARED");
        let err = env.undeclared("f").unwrap_err().to_string();
        assert!(
            err.contains("f reads NOT_DECLARED without declaring it"),
            "{err}"
        );
    }

    #[test]
    fn a_computed_default_is_not_parsed() {
        let lookup = |_: &str| None;
        assert!(env_of(&lookup).parse::<String>(&NAME).is_err());
    }

    #[test]
    fn the_table_shows_each_default_as_the_readme_does() {
        let t = markdown_table(&[COUNT, NAME]);
        assert!(t.contains("| `WRITE_BATCH_MAX` | `1000` | most cases in one bulk insert |\n"));
        assert!(t.contains("| `CONSUMER_NAME` | `<K_REVISION>-<host>` | its name |\n"));
    }
}
