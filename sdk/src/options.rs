//! Typed plugin options.

use serde::de::DeserializeOwned;

/// Parses a plugin's JSON options into `T`.
///
/// Empty text and `null` mean "no options" and parse as `{}`, so a type with
/// `#[serde(default)]` works without any configuration. Use
/// `#[serde(deny_unknown_fields)]` to refuse misspelt keys. Errors name the
/// offending field path, e.g. `invalid options: facility: unknown facility "x"`.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// #[serde(deny_unknown_fields)]
/// struct Opts { token: String, #[serde(default)] index: Option<String> }
///
/// let o: Opts = relay_sdk::parse_options(r#"{"token":"t"}"#).unwrap();
/// assert_eq!(o.token, "t");
/// let err = relay_sdk::parse_options::<Opts>(r#"{"token":"t","idx":"x"}"#).unwrap_err();
/// assert!(err.contains("unknown field `idx`"));
/// let err = relay_sdk::parse_options::<Opts>(r#"{"token":5}"#).unwrap_err();
/// assert!(err.contains("token:"));
/// ```
pub fn parse_options<T: DeserializeOwned>(options: &str) -> Result<T, String> {
    let text = match options.trim() {
        "" | "null" => "{}",
        t => t,
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("invalid options: {inner}")
        } else {
            format!("invalid options: {path}: {inner}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Opts {
        name: Option<String>,
        nested: Nested,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Nested {
        level: u8,
    }

    #[test]
    fn empty_and_null_are_defaults() {
        assert_eq!(parse_options::<Opts>("").unwrap(), Opts::default());
        assert_eq!(parse_options::<Opts>(" null ").unwrap(), Opts::default());
        assert_eq!(parse_options::<Opts>("{}").unwrap(), Opts::default());
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_options::<Opts>(r#"{"nested":{"level":"high"}}"#).unwrap_err();
        assert!(err.starts_with("invalid options: nested.level: "), "{err}");
        let err = parse_options::<Opts>(r#"{"nmae":"x"}"#).unwrap_err();
        assert!(err.contains("unknown field `nmae`"), "{err}");
        let err = parse_options::<Opts>(r#"{"nested":{"lvl":1}}"#).unwrap_err();
        assert!(err.contains("nested") && err.contains("`lvl`"), "{err}");
        let err = parse_options::<Opts>("[1]").unwrap_err();
        assert!(err.starts_with("invalid options: "), "{err}");
    }
}
