//! A reachability truth table: rows are sources, columns destinations,
//! `.` reachable and `X` blocked, printed as upstream's netpol suite prints
//! its tables.

use std::fmt;

/// Who may reach whom, for one port and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    names: Vec<String>,
    /// Row-major: `cells[from * n + to]`.
    cells: Vec<bool>,
}

impl Reachability {
    /// A table over `names` with every cell `allowed`.
    pub fn new(names: Vec<String>, allowed: bool) -> Self {
        let n = names.len();
        Reachability {
            names,
            cells: vec![allowed; n * n],
        }
    }

    /// Reads a table written as [`Display`](fmt::Display) prints it: a
    /// header `-` and the destination names, then one row per source (its
    /// name, then `.` or `X` per destination), in the order of `names`.
    pub fn parse(text: &str, names: &[String]) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header: Vec<&str> = lines
            .next()
            .ok_or("an empty table")?
            .split_whitespace()
            .collect();
        let want: Vec<&str> = std::iter::once("-")
            .chain(names.iter().map(String::as_str))
            .collect();
        if header != want {
            return Err(format!(
                "header is {:?}, expected {:?}",
                header.join(" "),
                want.join(" ")
            ));
        }
        let mut table = Reachability::new(names.to_vec(), false);
        let mut rows = 0;
        for (r, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let Some(name) = names.get(r) else {
                return Err(format!("more than {} rows: {line:?}", names.len()));
            };
            if cells.first() != Some(&name.as_str()) || cells.len() != names.len() + 1 {
                return Err(format!(
                    "row {} must be {name} and {} cells: {line:?}",
                    r + 1,
                    names.len()
                ));
            }
            for (c, cell) in cells[1..].iter().enumerate() {
                let allowed = match *cell {
                    "." => true,
                    "X" => false,
                    other => return Err(format!("cell {other:?} in row {name}: use . or X")),
                };
                table.set(r, c, allowed);
            }
            rows += 1;
        }
        if rows != names.len() {
            return Err(format!("{rows} rows, expected {}", names.len()));
        }
        Ok(table)
    }

    /// The pods, in row (and column) order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `from` reaches `to` (indices into [`Reachability::names`]).
    pub fn get(&self, from: usize, to: usize) -> bool {
        self.cells
            .get(from * self.names.len() + to)
            .copied()
            .unwrap_or(false)
    }

    /// Sets one cell; indices out of range are ignored.
    pub fn set(&mut self, from: usize, to: usize, allowed: bool) {
        let n = self.names.len();
        if from < n && to < n {
            self.cells[from * n + to] = allowed;
        }
    }

    /// The (from, to) pairs where `observed` differs from `self`.
    pub fn mismatches(&self, observed: &Reachability) -> Vec<(usize, usize)> {
        let n = self.names.len();
        (0..n)
            .flat_map(|f| (0..n).map(move |t| (f, t)))
            .filter(|&(f, t)| self.get(f, t) != observed.get(f, t))
            .collect()
    }

    /// Expected, observed, and a comparison grid (`X` where they differ),
    /// as upstream prints a failed truth table.
    pub fn comparison(&self, observed: &Reachability) -> String {
        let n = self.names.len();
        let mut diff = Reachability::new(self.names.clone(), true);
        for (f, t) in self.mismatches(observed) {
            diff.set(f, t, false);
        }
        let wrong = self.mismatches(observed).len();
        format!(
            "expected:\n{self}\nobserved:\n{observed}\ncomparison ({wrong} of {} wrong, X = differs):\n{diff}",
            n * n
        )
    }
}

impl fmt::Display for Reachability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.names.iter().map(String::len).max().unwrap_or(1).max(1);
        let line = |first: &str, cells: &mut dyn Iterator<Item = &str>| {
            let mut l = format!("{first:width$}");
            for c in cells {
                l.push_str(&format!(" {c:width$}"));
            }
            l.trim_end().to_string()
        };
        writeln!(
            f,
            "{}",
            line("-", &mut self.names.iter().map(String::as_str))
        )?;
        for (r, from) in self.names.iter().enumerate() {
            let mut cells = (0..self.names.len()).map(|c| if self.get(r, c) { "." } else { "X" });
            writeln!(f, "{}", line(from, &mut cells))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["x/a", "x/b"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn printing_and_parsing_round_trip() {
        let mut t = Reachability::new(names(), true);
        t.set(0, 1, false);
        let text = t.to_string();
        assert_eq!(text, "-   x/a x/b\nx/a .   X\nx/b .   .\n");
        assert_eq!(Reachability::parse(&text, &names()).unwrap(), t);
    }

    #[test]
    fn malformed_tables_are_refused() {
        let n = names();
        assert!(Reachability::parse("", &n).is_err());
        assert!(Reachability::parse("- x/b x/a\nx/a . .\nx/b . .", &n).is_err());
        assert!(Reachability::parse("- x/a x/b\nx/a . .", &n).is_err());
        assert!(Reachability::parse("- x/a x/b\nx/a . o\nx/b . .", &n).is_err());
        assert!(Reachability::parse("- x/a x/b\nx/a . .\nx/b . . .", &n).is_err());
    }

    #[test]
    fn the_comparison_marks_the_differing_cells() {
        let expected = Reachability::new(names(), true);
        let mut observed = expected.clone();
        observed.set(1, 0, false);
        assert_eq!(expected.mismatches(&observed), vec![(1, 0)]);
        let c = expected.comparison(&observed);
        assert!(c.contains("1 of 4 wrong"), "{c}");
        assert!(c.ends_with("x/a .   .\nx/b X   .\n"), "{c}");
    }
}
