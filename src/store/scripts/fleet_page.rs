//! `migrations-lua/fleet_page.lua`: read one page of a generation's held shards.

use redis::Value;

use super::reply::{array, integer, natural, text};
use super::{ScriptReply, script_call};
use crate::domain::{ShardStatus, timestamp_from_millis};

script_call! {
    /// Reads the live leases of ids `first .. first + count` of `generation`, with the figures
    /// of [`Figures`].
    FleetPage<'a> = "fleet_page.lua";
    keys { plan_key => plan }
    argv {
        generation: u64,
        first: u32,
        count: u32,
        group_size: u32,
        shard_figures: &'a str,
        lease_figures: &'a str,
    }
    reply Page;
    schema_guard false;
}

/// A figure `/status` shows of each held shard, as a beat reports it: the lease field beat.lua
/// keeps it in (its header names them), and how the field's text is shown.
struct Figure {
    field: &'static str,
    /// Each shard of a group has its own (`g`, `g:<id>`, ...); otherwise the group shares one.
    per_shard: bool,
    /// Only `/status` shows it (`extra`: bots may put large or private data there), not scrapes.
    status_only: bool,
    show: fn(&mut ShardStatus, &str),
}

/// Every figure a fleet read may show. A figure that beats report and `/status` shows is one row
/// here (and its field in beat.lua and `beat.rs`).
const FIGURES: &[Figure] = &[
    Figure {
        field: "g",
        per_shard: true,
        status_only: false,
        show: |shard, text| shard.guild_count = text.parse().ok(),
    },
    Figure {
        field: "l",
        per_shard: true,
        status_only: false,
        show: |shard, text| shard.latency = text.parse().ok(),
    },
    Figure {
        field: "e",
        per_shard: true,
        status_only: false,
        show: |shard, text| {
            shard.events_per_second = counter_rate(text);
            shard.events_moved_at_ms = counter_moved_at(text);
        },
    },
    // Silence (mark_silent.lua): the still spell of the shard's last silent episode.
    Figure {
        field: "s",
        per_shard: true,
        status_only: false,
        show: |shard, text| {
            shard.silent_episode_ms = text.split(' ').next().and_then(|ms| ms.parse().ok());
        },
    },
    Figure {
        field: "x",
        per_shard: false,
        status_only: true,
        show: |shard, text| shard.extra = serde_json::from_str(text).ok(),
    },
    Figure {
        field: "p",
        per_shard: false,
        status_only: false,
        show: |shard, text| shard.process = Some(text.to_owned()),
    },
    Figure {
        field: "c",
        per_shard: false,
        status_only: false,
        show: |shard, text| shard.cpu = counter_rate(text),
    },
    Figure {
        field: "m",
        per_shard: false,
        status_only: false,
        show: |shard, text| shard.rss_bytes = text.parse().ok(),
    },
    // Placement by load (mark_moves.lua): where the shard is moving, when it last arrived by a move.
    Figure {
        field: "v",
        per_shard: false,
        status_only: false,
        show: |shard, text| shard.moving_to = text.split_once(' ').map(|(_, to)| to.to_owned()),
    },
    Figure {
        field: "a",
        per_shard: false,
        status_only: false,
        show: |shard, text| shard.moved_in_at = text.parse().ok().map(timestamp_from_millis),
    },
];

/// The rate a load counter's lease field holds (`"<counter> <since ms> <rate>"`, beat.lua's
/// "Load counters"); `None` until the counter was reported twice.
fn counter_rate(text: &str) -> Option<f64> {
    text.split(' ')
        .nth(2)?
        .parse()
        .ok()
        .filter(|rate: &f64| rate.is_finite())
}

/// When a load counter last moved (its lease field's `<since ms>`: beat.lua keeps it while the
/// counter stands still).
fn counter_moved_at(text: &str) -> Option<i64> {
    text.split(' ').nth(1)?.parse().ok()
}

/// The figures one fleet read asks for: [`FleetPage`]'s `shard_figures` and `lease_figures`, and
/// the order in which the rows of a [`Page`] hold them.
pub struct Figures {
    in_row_order: Vec<&'static Figure>,
    pub shard_figures: String,
    pub lease_figures: String,
}

impl Figures {
    /// Every figure, for `/status`.
    pub fn for_status() -> Self {
        Self::new(true)
    }

    /// The figures scrapes show: all but the status-only ones.
    pub fn for_scrapes() -> Self {
        Self::new(false)
    }

    fn new(for_status: bool) -> Self {
        let wanted = |per_shard: bool| {
            FIGURES.iter().filter(move |figure| {
                figure.per_shard == per_shard && (for_status || !figure.status_only)
            })
        };
        let names = |per_shard| {
            wanted(per_shard)
                .map(|figure| figure.field)
                .collect::<Vec<_>>()
                .join(" ")
        };
        Self {
            // fleet_page.lua answers the per-shard figures first.
            in_row_order: wanted(true).chain(wanted(false)).collect(),
            shard_figures: names(true),
            lease_figures: names(false),
        }
    }

    /// A page's rows as `/status` shows them: the held shards, and apart from them the shards
    /// nobody holds with the figures their last holders reported.
    pub fn statuses(&self, Page(rows): Page) -> Option<PageStatuses> {
        let shards = rows
            .into_iter()
            .map(|row| {
                if row.figures.len() != self.in_row_order.len() {
                    return None;
                }
                let mut status = ShardStatus {
                    shard_id: row.shard_id,
                    last_beat: timestamp_from_millis(row.last_beat_ms),
                    fence: row.fence,
                    beaten: row.beaten,
                    ..ShardStatus::default()
                };
                for (figure, value) in self.in_row_order.iter().zip(&row.figures) {
                    if let Some(text) = value {
                        (figure.show)(&mut status, text);
                    }
                }
                // Silent while the episode's still spell is the counter's current one.
                status.silent_since = status
                    .silent_episode_ms
                    .filter(|&since| Some(since) == status.events_moved_at_ms)
                    .map(timestamp_from_millis);
                Some((row.last_beat_ms >= 0, status))
            })
            .collect::<Option<Vec<_>>>()?;
        let (held, unheld) = shards.into_iter().partition(|(held, _)| *held);
        let strip = |shards: Vec<(bool, ShardStatus)>| shards.into_iter().map(|(_, shard)| shard);
        Some(PageStatuses {
            held: strip(held).collect(),
            unheld: strip(unheld).collect(),
        })
    }
}

/// One page of a generation, read: see [`Figures::statuses`].
pub struct PageStatuses {
    /// Held shards, by shard id.
    pub held: Vec<ShardStatus>,
    /// Shards nobody holds whose previous holders reported figures (a handover under way, or a
    /// holder that died): only their figures mean anything.
    pub unheld: Vec<ShardStatus>,
}

/// The page's held shards, by shard id, with the figures asked for (see [`Figures::statuses`]).
pub struct Page(Vec<Row>);

struct Row {
    shard_id: u32,
    last_beat_ms: i64,
    beaten: bool,
    fence: u64,
    figures: Vec<Option<String>>,
}

impl ScriptReply for Page {
    fn decode(reply: &Value) -> Option<Self> {
        array(reply)?
            .iter()
            .map(|row| {
                let [shard_id, last_beat, beaten, fence, figures @ ..] = array(row)? else {
                    return None;
                };
                Some(Row {
                    shard_id: natural(shard_id)? as u32,
                    last_beat_ms: integer(last_beat)?,
                    beaten: integer(beaten)? == 1,
                    fence: natural(fence)?,
                    figures: figures.iter().map(text).collect(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(Page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of one row holding, for each figure asked, `value(field)` (`Nil` for `None`).
    fn page_of_one_row(figures: &Figures, value: impl Fn(&str) -> Option<&str>) -> Page {
        let mut row = vec![
            Value::Int(3),
            Value::Int(1_700_000_000_000),
            Value::Int(1),
            Value::Int(9),
        ];
        row.extend(figures.in_row_order.iter().map(|figure| {
            value(figure.field).map_or(Value::Nil, |text| {
                Value::BulkString(text.as_bytes().to_vec())
            })
        }));
        Page::decode(&Value::Array(vec![Value::Array(row)])).expect("a well-formed page")
    }

    #[test]
    fn a_row_s_figures_are_shown_in_the_order_they_were_asked() {
        let figures = Figures::for_status();
        assert!(figures.shard_figures.starts_with("g l"));
        assert!(figures.lease_figures.split(' ').any(|field| field == "x"));
        let page = page_of_one_row(&figures, |field| match field {
            "g" => Some("1200"),
            "x" => Some(r#"{"v":1}"#),
            _ => None,
        });
        let shards = figures.statuses(page).expect("the figures asked for").held;
        let shard = &shards[0];
        assert_eq!((shard.shard_id, shard.fence, shard.beaten), (3, 9, true));
        assert_eq!((shard.guild_count, shard.latency), (Some(1200), None));
        assert_eq!(shard.extra, Some(serde_json::json!({"v": 1})));
    }

    #[test]
    fn load_counters_show_their_rate_and_the_process_its_label_cpu_and_memory() {
        let figures = Figures::for_scrapes();
        let page = page_of_one_row(&figures, |field| match field {
            "e" => Some("18000 1700000000000 42.500"),
            "c" => Some("12.5 1700000000000 0.250"),
            "m" => Some("104857600"),
            "p" => Some("bot-1:4242"),
            _ => None,
        });
        let shard = &figures.statuses(page).expect("the figures asked for").held[0];
        assert_eq!(shard.events_per_second, Some(42.5));
        assert_eq!(shard.cpu, Some(0.25));
        assert_eq!(shard.rss_bytes, Some(104_857_600));
        assert_eq!(shard.process.as_deref(), Some("bot-1:4242"));
        assert_eq!(shard.events_moved_at_ms, Some(1_700_000_000_000));
        assert_eq!(shard.silent_since, None);
    }

    #[test]
    fn a_shard_is_silent_while_its_episode_is_its_counter_s_still_spell() {
        let figures = Figures::for_scrapes();
        let shard = |counter: &'static str| {
            let page = page_of_one_row(&figures, |field| match field {
                "e" => Some(counter),
                "s" => Some("1700000000000 1700000600000"),
                _ => None,
            });
            figures.statuses(page).expect("the figures asked for").held[0].clone()
        };
        let silent = shard("18000 1700000000000 0.000");
        assert_eq!(
            silent.silent_since,
            Some(timestamp_from_millis(1_700_000_000_000))
        );
        // The counter moved since: the episode is over.
        assert_eq!(shard("18100 1700000700000 0.100").silent_since, None);
    }

    #[test]
    fn a_counter_reported_once_has_no_rate_yet() {
        assert_eq!(counter_rate("18000 1700000000000 "), None);
        assert_eq!(counter_rate("18000 1700000000000"), None);
        assert_eq!(counter_rate("0 1700000000000 0.000"), Some(0.0));
    }

    #[test]
    fn scrapes_leave_the_status_only_figures_out() {
        let figures = Figures::for_scrapes();
        assert!(figures.in_row_order.iter().all(|figure| !figure.status_only));
        assert!(!figures.lease_figures.split(' ').any(|field| field == "x"));
        let page = page_of_one_row(&figures, |_| Some("1"));
        let shards = figures.statuses(page).expect("the figures asked for").held;
        assert_eq!(shards[0].extra, None);
        let short = Value::Array(vec![Value::Array(vec![Value::Int(0); 4])]);
        let page = Page::decode(&short).expect("a page");
        assert!(figures.statuses(page).is_none(), "a row without g and l");
    }
}
