//! The benchmark commands run end to end at scale XS against the throwaway MariaDB and
//! PostgreSQL of `scripts/testenv` (`REFRACT_TEST_MYSQL_URL`, `REFRACT_TEST_PG_URL`): the
//! generator fills both, the executor bench and the HTTP bench answer every query without an
//! error. Timings are printed, never asserted.

use std::process::Command;

fn bench(args: &[&str]) -> String {
    for var in ["REFRACT_TEST_MYSQL_URL", "REFRACT_TEST_PG_URL"] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: run the tests through scripts/test (it starts the servers)"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_refract-bench"))
        .args(["--scale", "xs"])
        .args(args)
        .output()
        .expect("running refract-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "refract-bench {args:?} failed\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("errors engine="),
        "refract-bench {args:?} saw failed requests\n{stderr}"
    );
    stdout
}

/// The numbers in one table row of the output, e.g. `| MariaDB | Q1 pk lookup | 1.5 | 66 |`.
fn row<'a>(out: &'a str, source: &str, query: &str) -> Vec<&'a str> {
    let prefix = format!("| {source} | {query} |");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {prefix} in\n{out}"));
    line[prefix.len()..]
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn generate_then_run_the_executor_and_http_benchmarks() {
    bench(&["gen"]);

    let exec = bench(&["exec", "--per-round", "200"]);
    for source in ["MariaDB", "PostgreSQL"] {
        // Q2: the posts of a user with their comments; the same bytes from both sources.
        let q2 = row(&exec, source, "Q2 include");
        assert!(q2[0].parse::<f64>().unwrap() > 0.0, "{q2:?}");
        assert!(
            q2[1].parse::<usize>().unwrap() > 100,
            "Q2 returns posts: {q2:?}"
        );
    }

    let http = bench(&[
        "query",
        "--seconds",
        "1",
        "--connections",
        "4",
        "--only",
        "1,2",
    ]);
    for source in ["MariaDB", "PostgreSQL"] {
        for query in ["Q1 pk lookup", "Q2 include"] {
            let cells = row(&http, source, query);
            let engine_rate: f64 = cells[0].parse().unwrap();
            let baseline_rate: f64 = cells[3].parse().unwrap();
            assert!(
                engine_rate > 0.0 && baseline_rate > 0.0,
                "{source} {query}: {cells:?}"
            );
        }
    }
}
