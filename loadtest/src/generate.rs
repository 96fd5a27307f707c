//! `loadtest gen`: realistic random cases for Guatemala's 22 departments.
//!
//! Proportions are plausible rather than official: the capital department
//! reports the most cases, ages skew to working adults, Mayan surnames are
//! as common as the department's indigenous population, and older people are
//! more often hospitalized or deceased.

use std::io::Write;

use events::Case;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (department, share of cases in %, share of indigenous population 0..=1).
pub const DEPARTMENTS: [(&str, f64, f64); 22] = [
    ("Guatemala", 42.0, 0.12),
    ("Quetzaltenango", 6.0, 0.52),
    ("Escuintla", 5.5, 0.06),
    ("Sacatepéquez", 4.5, 0.40),
    ("San Marcos", 3.5, 0.30),
    ("Alta Verapaz", 3.0, 0.93),
    ("Huehuetenango", 3.0, 0.65),
    ("Petén", 3.0, 0.30),
    ("Chimaltenango", 3.0, 0.78),
    ("Izabal", 2.5, 0.30),
    ("Zacapa", 2.5, 0.01),
    ("Suchitepéquez", 2.5, 0.50),
    ("Retalhuleu", 2.0, 0.20),
    ("Santa Rosa", 2.0, 0.03),
    ("Jutiapa", 2.0, 0.03),
    ("Chiquimula", 2.0, 0.20),
    ("Quiché", 2.0, 0.89),
    ("Sololá", 1.5, 0.96),
    ("Totonicapán", 1.5, 0.98),
    ("El Progreso", 1.5, 0.02),
    ("Jalapa", 1.5, 0.20),
    ("Baja Verapaz", 1.0, 0.60),
];

#[rustfmt::skip]
const FEMALE: &[&str] = &[
    "María", "Ana", "Rosa", "Carmen", "Sofía", "Lucía", "Andrea", "Gabriela", "Karla", "Heidy", "Ingrid",
    "Mónica", "Silvia", "Claudia", "Marta", "Juana", "Sandra", "Lesly", "Dulce", "Evelyn", "Glenda", "Irma",
    "Olga", "Zoila", "Brenda", "Wendy", "Mayra", "Astrid", "Luisa", "Alejandra", "Fernanda", "Elvira",
];
#[rustfmt::skip]
const MALE: &[&str] = &[
    "José", "Juan", "Carlos", "Luis", "Jorge", "Mario", "Miguel", "Pedro", "Francisco", "Manuel", "Edgar",
    "Byron", "Erick", "Marvin", "Otto", "Diego", "Pablo", "Fernando", "Julio", "César", "Rony", "Selvin",
    "Kevin", "Wilson", "Héctor", "Hugo", "Óscar", "Estuardo", "Rodrigo", "Gustavo", "Domingo", "Sebastián",
];
#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "López", "García", "Pérez", "Hernández", "González", "Rodríguez", "Morales", "Castillo", "Ramírez",
    "Martínez", "Méndez", "Juárez", "Díaz", "Reyes", "Cruz", "Ortiz", "Sánchez", "Flores", "Gómez", "Chávez",
    "Mejía", "Velásquez", "Barrios", "Orellana", "Estrada", "Monterroso", "Alvarado", "Aguilar", "Ramos",
    "de León", "Cabrera", "Solares", "Recinos", "Cifuentes", "Arévalo", "Paz",
];
#[rustfmt::skip]
const MAYAN_SURNAMES: &[&str] = &[
    "Ajú", "Tzul", "Xicará", "Cux", "Coyoy", "Chán", "Pop", "Caal", "Choc", "Tzoc", "Quiej", "Batz", "Sic",
    "Yat", "Coc", "Ixcoy", "Tuyuc", "Xol", "Cac", "Chiquín", "Tzunún", "Sipac", "Ajcalón", "Xinico",
];

/// (lowest age of the decade, weight): most cases are 20 to 59.
#[rustfmt::skip]
const AGE_DECADES: [(i64, f64); 10] = [
    (0, 3.0), (10, 6.0), (20, 22.0), (30, 24.0), (40, 18.0),
    (50, 13.0), (60, 8.0), (70, 4.0), (80, 1.6), (90, 0.4),
];

/// `count` cases drawn with `seed`: the same seed gives the same cases.
pub fn cases(count: u64, seed: u64) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| case(&mut rng)).collect()
}

fn case(rng: &mut impl Rng) -> Case {
    let (location, _, indigenous) = DEPARTMENTS[weighted(rng, DEPARTMENTS.iter().map(|d| d.1))];
    let mayan = rng.random_bool(indigenous);
    let name = name(rng, mayan);
    let decade = AGE_DECADES[weighted(rng, AGE_DECADES.iter().map(|a| a.1))].0;
    let age = decade + rng.random_range(0..10);
    let infectedtype = if rng.random_bool(0.06) {
        "imported"
    } else {
        "communitary"
    };
    // active, recovered, hospitalized, deceased: older cases fare worse.
    let states = ["active", "recovered", "hospitalized", "deceased"];
    let weights = if age >= 60 {
        [28.0, 45.0, 15.0, 12.0]
    } else {
        [37.0, 57.0, 5.0, 1.0]
    };
    let state = states[weighted(rng, weights.into_iter())];
    Case::new(&name, location, age, infectedtype, state).expect("generated cases are valid")
}

/// "Given [Second] Surname Surname", the usual Guatemalan form.
fn name(rng: &mut impl Rng, mayan: bool) -> String {
    let firsts = if rng.random_bool(0.5) { FEMALE } else { MALE };
    let mut name = pick(rng, firsts).to_owned();
    if rng.random_bool(0.35) {
        let second = pick(rng, firsts);
        if second != name {
            name.push(' ');
            name.push_str(second);
        }
    }
    for i in 0..2 {
        let pool = if mayan && (i == 0 || rng.random_bool(0.7)) {
            MAYAN_SURNAMES
        } else {
            SURNAMES
        };
        name.push(' ');
        name.push_str(pick(rng, pool));
    }
    name
}

fn pick<'a>(rng: &mut impl Rng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// Index drawn with probability proportional to its weight.
fn weighted(rng: &mut impl Rng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    let mut x = rng.random_range(0.0..total);
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}

/// Writes a JSON array with one case a line: valid JSON that diffs well.
pub fn write_json(cases: &[Case], out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(b"[\n")?;
    for (i, c) in cases.iter().enumerate() {
        out.write_all(b"  ")?;
        serde_json::to_writer(&mut *out, c)?;
        out.write_all(if i + 1 < cases.len() { b",\n" } else { b"\n" })?;
    }
    out.write_all(b"]\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_cases_and_all_valid() {
        let a = cases(500, 7);
        assert_eq!(a, cases(500, 7));
        assert_ne!(a, cases(500, 8));
        let mut buf = Vec::new();
        write_json(&a, &mut buf).unwrap();
        assert_eq!(
            crate::traffic::parse(std::str::from_utf8(&buf).unwrap()).unwrap(),
            a
        );
    }

    #[test]
    fn proportions_are_plausible() {
        let cs = cases(20_000, 1);
        let share =
            |f: &dyn Fn(&Case) -> bool| cs.iter().filter(|c| f(c)).count() as f64 / cs.len() as f64;
        let capital = share(&|c| c.location.as_str() == "Guatemala");
        assert!((0.38..0.46).contains(&capital), "{capital}");
        let adults = share(&|c| (20..60).contains(&c.age.years()));
        assert!((0.70..0.84).contains(&adults), "{adults}");
        let imported = share(&|c| c.infectedtype.as_str() == "imported");
        assert!((0.04..0.08).contains(&imported), "{imported}");
        let deceased = share(&|c| c.state.as_str() == "deceased");
        assert!((0.01..0.05).contains(&deceased), "{deceased}");
        let old_deceased = cs
            .iter()
            .filter(|c| c.age.years() >= 60)
            .filter(|c| c.state.as_str() == "deceased")
            .count();
        let young_deceased = cs
            .iter()
            .filter(|c| c.age.years() < 60)
            .filter(|c| c.state.as_str() == "deceased")
            .count();
        assert!(
            old_deceased * 3 > young_deceased,
            "older cases die more often: {old_deceased} vs {young_deceased}"
        );
        let all_departments: std::collections::BTreeSet<_> =
            cs.iter().map(|c| c.location.as_str()).collect();
        assert_eq!(all_departments.len(), 22);
        assert!(cs.iter().all(|c| c.name.split(' ').count() >= 3));
    }
}
