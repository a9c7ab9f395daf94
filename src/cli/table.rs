//! Text tables and the cells the commands put in them.

use chrono::{DateTime, Utc};

/// A column: its title, and whether its cells are numbers (kept to the right).
pub struct Column {
    pub title: &'static str,
    pub numeric: bool,
}

impl Column {
    pub const fn text(title: &'static str) -> Self {
        Self {
            title,
            numeric: false,
        }
    }

    pub const fn number(title: &'static str) -> Self {
        Self {
            title,
            numeric: true,
        }
    }
}

/// `rows` under `columns`' titles, each column as wide as its widest cell, two spaces apart.
pub fn render(columns: &[Column], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            rows.iter()
                .filter_map(|row| row.get(index))
                .map(|cell| cell.chars().count())
                .chain([column.title.chars().count()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let titles: Vec<String> = columns.iter().map(|column| column.title.into()).collect();
    let mut text = String::new();
    for row in std::iter::once(&titles).chain(rows) {
        let cells: Vec<String> = columns
            .iter()
            .zip(&widths)
            .zip(row)
            .map(|((column, &width), cell)| {
                if column.numeric {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `1 shard`, `4 shards`.
pub fn counted(count: impl Into<u64>, noun: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A value the API may leave null: `-` then.
pub fn or_dash<T>(value: Option<T>, format: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "-".into(), format)
}

pub fn rate(events_per_second: f64) -> String {
    format!("{events_per_second:.1}")
}

pub fn cores(cpu: f64) -> String {
    format!("{cpu:.2}")
}

pub fn bytes(count: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = count as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// How long ago `at` was, in the largest unit that keeps it readable.
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

/// At most this many runs of ids are written out; a longer list ends with how many more.
const MOST_RUNS: usize = 8;

/// Ids as runs, `0-3, 7, 9-10`; `ids` must be ascending.
pub fn id_runs(ids: impl IntoIterator<Item = u32>) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
            _ => runs.push((id, id)),
        }
    }
    let mut text: Vec<String> = runs
        .iter()
        .take(MOST_RUNS)
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    if runs.len() > MOST_RUNS {
        text.push(format!("and {} more runs", runs.len() - MOST_RUNS));
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_and_keeps_numbers_right() {
        let text = render(
            &[Column::text("SHARD"), Column::number("EVENTS/S")],
            &[
                vec!["0".into(), "41.2".into()],
                vec!["10".into(), "-".into()],
            ],
        );
        assert_eq!(text, "SHARD  EVENTS/S\n0          41.2\n10            -\n");
    }

    #[test]
    fn ids_are_written_as_runs_and_a_long_list_is_cut_short() {
        assert_eq!(id_runs([0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(id_runs([]), "");
        assert_eq!(id_runs(0..65536), "0-65535");
        assert_eq!(
            id_runs((0..20).map(|id| id * 2)),
            "0, 2, 4, 6, 8, 10, 12, 14, and 12 more runs"
        );
    }

    #[test]
    fn sizes_and_ages_read_as_an_operator_would_say_them() {
        assert_eq!(bytes(187_695_104), "179.0 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::seconds(42), now), "42 s");
        assert_eq!(age(now - chrono::Duration::minutes(5), now), "5 min");
        assert_eq!(age(now - chrono::Duration::hours(3), now), "3 h");
        assert_eq!(age(now + chrono::Duration::seconds(2), now), "0 s");
    }
}
