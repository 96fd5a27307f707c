//! The README's configuration tables are the functions' declarations: each
//! table under its heading is exactly what `runtime::settings::markdown_table`
//! makes of the declared variables (name, default, meaning, in order).

use knative_manifests::{assert_no_problems, catalogue, paths};
use runtime::settings::{Var, markdown_table};

/// (the line above the table in README.md, the variables it lists).
fn tables() -> Vec<(String, &'static [Var])> {
    std::iter::once(("Every function:".to_owned(), catalogue::COMMON_VARS))
        .chain(
            catalogue::FUNCTIONS
                .iter()
                .map(|f| (format!("{}:", f.name), f.vars)),
        )
        .collect()
}

/// What is wrong with the table under `heading` in `readme`, if anything.
fn table_problem(readme: &str, heading: &str, vars: &[Var]) -> Option<String> {
    let expected = markdown_table(vars);
    let Some(at) = readme.find(&format!("\n{heading}\n\n")) else {
        return Some(format!(
            "README.md has no line {heading:?} followed by its table; add:\n\n{heading}\n\n{expected}"
        ));
    };
    let table: String = readme[at..]
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    (table != expected).then(|| {
        format!(
            "README.md's table under {heading:?} differs from the declarations (the functions' config.rs, runtime/src/config.rs, store/src/config.rs); it should read:\n\n{expected}"
        )
    })
}

#[test]
fn the_readme_tables_are_the_declarations() {
    let readme = std::fs::read_to_string(paths::repo_root().join("README.md")).unwrap();
    let problems: Vec<String> = tables()
        .iter()
        .filter_map(|(heading, vars)| table_problem(&readme, heading, vars))
        .collect();
    assert_no_problems("README tables vs declarations", &problems);
}

#[test]
fn a_variable_missing_from_the_readme_is_caught() {
    let readme = std::fs::read_to_string(paths::repo_root().join("README.md")).unwrap();
    let (heading, vars) = tables().pop().unwrap();
    let last = vars.last().unwrap();
    let row = format!("| `{}` |", last.name);
    let without: String = readme
        .lines()
        .filter(|l| !l.starts_with(&row))
        .map(|l| format!("{l}\n"))
        .collect();
    let problem = table_problem(&without, &heading, vars).expect("a missing row is a problem");
    assert!(problem.contains(&row), "{problem}");
}
