//! `BOTS_FILE`: the bots one fleet serves. One `[[bot]]` table per bot, with its `name`, its
//! `secret`, and any per-bot setting (a `per_bot` row of the settings table) named as its variable
//! in lower case; a setting a bot leaves out takes the environment's value (or its default):
//!
//! ```toml
//! [[bot]]
//! name = "music"
//! secret = "s3cret-music"
//! key_prefix = "music"
//! max_shards = 16
//!
//! [[bot]]
//! name = "moderation"
//! secret = "s3cret-moderation"
//! key_prefix = "moderation"
//! bot_token = "..."          # autoscale: no max_shards
//! ```
//!
//! Without the file, the environment describes one bot, named [`DEFAULT_BOT`].

use sha2::{Digest, Sha256};

use super::parse::Secret;
use super::settings::{ConfigError, Scope, Settings};

/// The name of the one bot the environment describes when there is no `BOTS_FILE`.
pub const DEFAULT_BOT: &str = "default";

/// One bot of the fleet: its name (a `bot` label in `/metrics`) and its whole settings.
#[derive(Clone)]
pub struct Bot {
    pub name: String,
    pub settings: Settings,
}

impl Bot {
    /// A digest of everything the bot's table can set (the settings table's per-bot rows and what
    /// derives from them): a reload keeps a bot whose fingerprint is unchanged as it runs, and
    /// restarts the store and jobs of one that changed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        self.settings.visit_per_bot_values(|name, value| {
            digest.update(format!("{name}={value}\n"));
        });
        digest.finalize().into()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BotsFile {
    #[serde(default)]
    bot: Vec<toml::Table>,
}

impl Settings {
    /// The bots this replica serves: those of `BOTS_FILE`, each on top of these settings, or
    /// without the file one bot ([`DEFAULT_BOT`]) with exactly these settings.
    pub fn bots(&self) -> Result<Vec<Bot>, ConfigError> {
        let Some(path) = &self.bots_file else {
            return Ok(vec![Bot {
                name: DEFAULT_BOT.into(),
                settings: self.clone(),
            }]);
        };
        let invalid = |reason: String| ConfigError {
            variable: "BOTS_FILE",
            value: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
        self.bots_from_toml(&text).map_err(invalid)
    }

    /// [`Settings::bots`] for the file's text. Errors name the bot and the setting, never a value
    /// (secrets, tokens and webhook URLs live here).
    pub fn bots_from_toml(&self, text: &str) -> Result<Vec<Bot>, String> {
        let file: BotsFile = toml::from_str(text).map_err(|error| error.message().to_owned())?;
        if file.bot.is_empty() {
            return Err("no [[bot]] in the file".into());
        }
        let mut bots: Vec<Bot> = Vec::new();
        for (index, table) in file.bot.iter().enumerate() {
            let name = match table.get("name") {
                Some(toml::Value::String(name)) if !name.trim().is_empty() => {
                    name.trim().to_owned()
                }
                _ => return Err(format!("bot #{}: needs a name", index + 1)),
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!(
                    "bot {name:?}: a name is letters, digits, '-', '_' and '.'"
                ));
            }
            let mut settings = self.clone();
            // Each bot brings its own secret (its not-inherited settings): the environment's would
            // select several bots.
            settings.forget_not_inherited();
            for (key, value) in table.iter().filter(|(key, _)| key.as_str() != "name") {
                let variable = key.to_ascii_uppercase();
                if !Settings::scope_of(&variable).is_some_and(Scope::is_per_bot) {
                    return Err(format!("bot {name:?}: {key} is not a per-bot setting"));
                }
                let value = match value {
                    toml::Value::String(text) => text.trim().to_owned(),
                    toml::Value::Integer(number) => number.to_string(),
                    toml::Value::Float(number) => number.to_string(),
                    toml::Value::Boolean(flag) => flag.to_string(),
                    _ => {
                        return Err(format!(
                            "bot {name:?}: {key} must be a string, number or boolean"
                        ));
                    }
                };
                if value.is_empty() {
                    continue;
                }
                settings
                    .set(&variable, &value)
                    .map_err(|reason| format!("bot {name:?}: invalid {key}: {reason}"))?;
            }
            settings.validate().map_err(|error| {
                format!(
                    "bot {name:?}: invalid {}: {}",
                    error.variable.to_lowercase(),
                    error.reason
                )
            })?;
            if settings.secret.is_none() {
                return Err(format!("bot {name:?}: needs a secret"));
            }
            for other in &bots {
                if other.name == name {
                    return Err(format!("bot {name:?} is listed twice"));
                }
                if other.settings.key_prefix == settings.key_prefix {
                    return Err(format!(
                        "bots {:?} and {name:?} share key_prefix {:?}: give each its own",
                        other.name, settings.key_prefix
                    ));
                }
                if shares_a_secret(&other.settings, &settings) {
                    return Err(format!(
                        "bots {:?} and {name:?} share a secret (secret or secret_previous): a \
                         secret selects one bot",
                        other.name
                    ));
                }
            }
            bots.push(Bot { name, settings });
        }
        Ok(bots)
    }
}

/// Whether a secret one bot accepts (its `secret` or `secret_previous`) is one the other accepts.
fn shares_a_secret(one: &Settings, other: &Settings) -> bool {
    accepted_secrets(one).any(|secret| accepted_secrets(other).any(|theirs| theirs == secret))
}

fn accepted_secrets(settings: &Settings) -> impl Iterator<Item = &str> {
    [&settings.secret, &settings.secret_previous]
        .into_iter()
        .flatten()
        .map(Secret::expose)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            secret: Some(Secret::new("env-secret")),
            max_shards: 4,
            webhook_url: Some("https://example.com/hook".into()),
            ..Settings::default()
        }
    }

    #[test]
    fn without_a_file_the_environment_is_one_bot() {
        let bots = base().bots().expect("one bot");
        assert_eq!(bots.len(), 1);
        assert_eq!(bots[0].name, DEFAULT_BOT);
        assert_eq!(
            bots[0].settings.secret.as_ref().map(Secret::expose),
            Some("env-secret")
        );
        assert_eq!(bots[0].settings.max_shards, 4);
    }

    #[test]
    fn each_bot_overrides_what_it_sets_and_inherits_the_rest() {
        let bots = base()
            .bots_from_toml(
                r#"
                [[bot]]
                name = "music"
                secret = "s-music"
                key_prefix = "music"
                max_shards = 16
                allow_shrink = true

                [[bot]]
                name = "mod"
                secret = "s-mod"
                key_prefix = "mod"
                shards_per_process = 2
                "#,
            )
            .expect("valid");
        let [music, moderation] = &bots[..] else {
            panic!("two bots")
        };
        assert_eq!(music.name, "music");
        assert_eq!(
            music.settings.secret.as_ref().map(Secret::expose),
            Some("s-music")
        );
        assert_eq!(
            (
                music.settings.max_shards,
                music.settings.key_prefix.as_str()
            ),
            (16, "music")
        );
        assert!(music.settings.allow_shrink && !music.settings.autoscale);
        assert_eq!(
            moderation.settings.max_shards, 4,
            "inherited from the environment"
        );
        assert_eq!(
            moderation.settings.shards_per_process,
            crate::config::ShardsPerProcess::Fixed(2)
        );
        assert!(moderation.settings.webhook_url.is_some(), "inherited");
    }

    #[test]
    fn a_bots_previous_secret_is_its_own_never_the_environments() {
        let rotating = Settings {
            secret_previous: Some(Secret::new("env-previous")),
            ..base()
        };
        let bots = rotating
            .bots_from_toml("[[bot]]\nname = \"a\"\nsecret = \"x\"\n[[bot]]\nname = \"b\"\nsecret = \"y\"\nsecret_previous = \"z\"\nkey_prefix = \"b\"\n")
            .expect("valid");
        assert!(bots[0].settings.secret_previous.is_none());
        assert_eq!(
            bots[1]
                .settings
                .secret_previous
                .as_ref()
                .map(Secret::expose),
            Some("z")
        );
    }

    #[test]
    fn a_bot_without_max_shards_follows_the_environments_autoscale() {
        let autoscaling = Settings {
            autoscale: true,
            ..Settings::default()
        };
        let bots = autoscaling
            .bots_from_toml("[[bot]]\nname = \"a\"\nsecret = \"x\"\n[[bot]]\nname = \"b\"\nsecret = \"y\"\nkey_prefix = \"b\"\nmax_shards = 3\n")
            .expect("valid");
        assert!(bots[0].settings.autoscale);
        assert!(!bots[1].settings.autoscale && bots[1].settings.max_shards == 3);
    }

    #[test]
    fn every_per_bot_setting_and_autoscale_changes_the_fingerprint() {
        let fingerprint = |settings: Settings| {
            Bot {
                name: "a".into(),
                settings,
            }
            .fingerprint()
        };
        assert_eq!(fingerprint(base()), fingerprint(base()), "same settings");
        for variable in Settings::per_bot_variables() {
            let with = |value: &str| {
                let mut settings = base();
                settings.set(variable, value).map(|()| settings)
            };
            // Two values the row's parser takes: numbers and text take digits, flags booleans,
            // shares fractions.
            let (one, other) = [("2", "3"), ("true", "false"), ("0.2", "0.3")]
                .into_iter()
                .find_map(|(one, other)| with(one).ok().zip(with(other).ok()))
                .unwrap_or_else(|| panic!("{variable} takes neither digits nor booleans"));
            assert_ne!(
                fingerprint(one),
                fingerprint(other),
                "{variable} is missing from the fingerprint: a reload would not apply it"
            );
        }
        let autoscaling = Settings {
            autoscale: true,
            ..base()
        };
        assert_ne!(fingerprint(autoscaling), fingerprint(base()), "autoscale");
    }

    #[test]
    fn invalid_files_are_refused_naming_the_bot_and_setting_but_no_value() {
        for (text, expected) in [
            ("", "no [[bot]]"),
            ("[[bot]]\nsecret = \"x\"\n", "bot #1: needs a name"),
            ("[[bot]]\nname = \"a\"\n", "bot \"a\": needs a secret"),
            (
                "[[bot]]\nname = \"a b\"\nsecret = \"x\"\n",
                "a name is letters",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nport = 1\n",
                "port is not a per-bot setting",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nmax_shards = \"lots\"\n",
                "bot \"a\": invalid max_shards",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nmax_shards = 0\n",
                "bot \"a\": invalid max_shards: must be between",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\n[[bot]]\nname = \"a\"\nsecret = \"y\"\nkey_prefix = \"b\"\n",
                "listed twice",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\n[[bot]]\nname = \"b\"\nsecret = \"y\"\n",
                "share key_prefix",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"same\"\n[[bot]]\nname = \"b\"\nsecret = \"same\"\nkey_prefix = \"b\"\n",
                "share a secret",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"admin\"\n",
                "bot \"a\": invalid secret: must differ from ADMIN_SECRET",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nsecret_previous = \"admin\"\n",
                "bot \"a\": invalid secret_previous: must differ from ADMIN_SECRET",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"same\"\nsecret_previous = \"same\"\n",
                "bot \"a\": invalid secret_previous: must differ from SECRET",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nsecret_previous = \"same\"\n[[bot]]\nname = \"b\"\nsecret = \"same\"\nkey_prefix = \"b\"\n",
                "share a secret",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nsecret_previous = \"same\"\n[[bot]]\nname = \"b\"\nsecret = \"y\"\nsecret_previous = \"same\"\nkey_prefix = \"b\"\n",
                "share a secret",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nwebhook_url = \"ftp://hidden-token\"\n",
                "bot \"a\": invalid webhook_url",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nload_target = 60\n",
                "bot \"a\": invalid load_target: needs SHARDS_PER_PROCESS=auto",
            ),
            (
                "[[bot]]\nname = \"a\"\nsecret = \"x\"\nshards_per_process = \"auto\"\ncpu_target = 0\n",
                "bot \"a\": invalid cpu_target: must be a number above 0",
            ),
        ] {
            let settings = Settings {
                admin_secret: Some(Secret::new("admin")),
                ..base()
            };
            let error = match settings.bots_from_toml(text) {
                Ok(_) => panic!("{text:?} must be refused"),
                Err(error) => error,
            };
            assert!(error.contains(expected), "{text:?}: {error}");
            for secret in ["hidden-token", "same", "admin\""] {
                assert!(!error.contains(secret), "no value in {error}");
            }
        }
    }
}
