//! A small GraphQL document parser for the RunPod fake: operations with optional names, variable
//! definitions (with defaults), aliases, arguments (literals of every kind, enums, variables),
//! nested selections, directives (ignored) and comments. Enough for the documents real RunPod
//! clients send, in both styles: interpolated literals (runpod-python, dstack, SkyPilot) and
//! variables (runpodctl, tgp). Fragments are refused with a syntax error.

use serde_json::{Map, Value};

/// Query or mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `query` (or an anonymous `{ ... }`).
    Query,
    /// `mutation`.
    Mutation,
}

/// One selected field, arguments resolved against the variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The alias, when given.
    pub alias: Option<String>,
    /// The field's name.
    pub name: String,
    /// Arguments as JSON (enums become strings).
    pub args: Map<String, Value>,
    /// Sub-selection.
    pub selections: Vec<Field>,
}

impl Field {
    /// The key the answer uses.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A parsed operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Query or mutation.
    pub kind: Kind,
    /// Root fields.
    pub selections: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Punct(char),
    Spread,
    Name(String),
    Num(String),
    Str(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() || c == ',' || c == '\u{feff}' => i += 1,
            '#' => {
                while chars.get(i).is_some_and(|c| *c != '\n') {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | '!' | '$' | '=' | '@' | '|' | '&' => {
                out.push(Tok::Punct(c));
                i += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                    out.push(Tok::Spread);
                    i += 3;
                } else {
                    return Err(format!("Syntax Error: Unexpected \".\" at {i}."));
                }
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Syntax Error: Unterminated string.".into()),
                        Some('"') => break,
                        Some('\\') => {
                            let esc = chars.get(i + 1).copied().unwrap_or('\\');
                            i += 2;
                            match esc {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                'b' => s.push('\u{8}'),
                                'f' => s.push('\u{c}'),
                                'u' => {
                                    let hex: String = chars.iter().skip(i).take(4).collect();
                                    let code = u32::from_str_radix(&hex, 16)
                                        .map_err(|_| "Syntax Error: Invalid Unicode escape.")?;
                                    s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                    i += 4;
                                }
                                other => s.push(other),
                            }
                            continue;
                        }
                        Some(c) => s.push(*c),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while chars.get(i).is_some_and(|c| *c == '_' || c.is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Tok::Name(chars[start..i].iter().collect()));
            }
            other => return Err(format!("Syntax Error: Unexpected character {other:?}.")),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    vars: &'a Map<String, Value>,
    defaults: Map<String, Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.at).cloned().ok_or("Syntax Error: Unexpected <EOF>.")?;
        self.at += 1;
        Ok(t)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("Syntax Error: Expected \"{c}\", found {:?}.", self.peek())) }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Name(n) => Ok(n),
            other => Err(format!("Syntax Error: Expected Name, found {other:?}.")),
        }
    }

    fn skip_type(&mut self) -> Result<(), String> {
        if self.eat('[') {
            self.skip_type()?;
            self.expect(']')?;
        } else {
            self.name()?;
        }
        self.eat('!');
        Ok(())
    }

    fn value(&mut self) -> Result<Value, String> {
        Ok(match self.next()? {
            Tok::Punct('$') => {
                let name = self.name()?;
                self.vars.get(&name).or_else(|| self.defaults.get(&name)).cloned().unwrap_or(Value::Null)
            }
            Tok::Num(text) => {
                if let Ok(i) = text.parse::<i64>() {
                    Value::from(i)
                } else {
                    let f: f64 = text.parse().map_err(|_| format!("Syntax Error: Invalid number {text:?}."))?;
                    Value::from(f)
                }
            }
            Tok::Str(s) => Value::String(s),
            Tok::Name(n) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(n),
            },
            Tok::Punct('[') => {
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.value()?);
                }
                Value::Array(items)
            }
            Tok::Punct('{') => Value::Object(self.object_fields('}')?),
            other => return Err(format!("Syntax Error: Unexpected {other:?}.")),
        })
    }

    fn object_fields(&mut self, close: char) -> Result<Map<String, Value>, String> {
        let mut map = Map::new();
        while !self.eat(close) {
            let key = self.name()?;
            self.expect(':')?;
            map.insert(key, self.value()?);
        }
        Ok(map)
    }

    fn directives(&mut self) -> Result<(), String> {
        while self.eat('@') {
            self.name()?;
            if self.eat('(') {
                self.object_fields(')')?;
            }
        }
        Ok(())
    }

    fn selections(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = Vec::new();
        while !self.eat('}') {
            if self.peek() == Some(&Tok::Spread) {
                return Err("Syntax Error: fragments are not supported by this server.".into());
            }
            let first = self.name()?;
            let (alias, name) = if self.eat(':') { (Some(first), self.name()?) } else { (None, first) };
            let args = if self.eat('(') { self.object_fields(')')? } else { Map::new() };
            self.directives()?;
            let selections = if self.peek() == Some(&Tok::Punct('{')) { self.selections()? } else { Vec::new() };
            fields.push(Field { alias, name, args, selections });
        }
        Ok(fields)
    }

    fn operation(&mut self) -> Result<Operation, String> {
        if self.peek() == Some(&Tok::Punct('{')) {
            let selections = self.selections()?;
            return Ok(Operation { kind: Kind::Query, selections });
        }
        let kind = match self.name()?.as_str() {
            "query" => Kind::Query,
            "mutation" => Kind::Mutation,
            other => return Err(format!("Syntax Error: Unexpected Name \"{other}\".")),
        };
        if matches!(self.peek(), Some(Tok::Name(_))) {
            self.name()?;
        }
        if self.eat('(') {
            while !self.eat(')') {
                self.expect('$')?;
                let var = self.name()?;
                self.expect(':')?;
                self.skip_type()?;
                if self.eat('=') {
                    let default = self.value()?;
                    self.defaults.insert(var, default);
                }
            }
        }
        self.directives()?;
        let selections = self.selections()?;
        Ok(Operation { kind, selections })
    }
}

/// Parses the first operation of `document`, with `variables` substituted.
pub fn parse(document: &str, variables: &Map<String, Value>) -> Result<Operation, String> {
    let mut parser = Parser { toks: lex(document)?, at: 0, vars: variables, defaults: Map::new() };
    parser.operation()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_literal_and_variable_styles() {
        let literal = r#"mutation { podFindAndDeployOnDemand(input: { name: "job-1", cloudType: SECURE,
            gpuCount: 1, dataCenterId: null, env: [{ key: "K", value: "V\"q" }], bid: 0.2 })
            { id machine { podHostId } } }"#;
        let op = parse(literal, &Map::new()).unwrap();
        assert_eq!(op.kind, Kind::Mutation);
        let f = &op.selections[0];
        assert_eq!(f.args["input"]["cloudType"], json!("SECURE"));
        assert_eq!(f.args["input"]["env"][0]["value"], json!("V\"q"));
        assert_eq!(f.args["input"]["dataCenterId"], Value::Null);
        assert_eq!(f.selections[1].selections[0].name, "podHostId");
        let vars = json!({"input": {"podId": "abc"}});
        let op = parse(
            "query pod($input: PodFilter!, $n: Int = 3) { p: pod(input: $input) { PortType: type n: x(k: $n) } } # c",
            vars.as_object().unwrap(),
        )
        .unwrap();
        let f = &op.selections[0];
        assert_eq!((f.key(), f.name.as_str()), ("p", "pod"));
        assert_eq!(f.args["input"]["podId"], json!("abc"));
        assert_eq!(f.selections[1].args["k"], json!(3));
        assert!(parse("{ a { ...F } }", &Map::new()).is_err());
    }
}
