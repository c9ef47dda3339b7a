//! The subset of SOQL the Salesforce emulator answers: `SELECT fields FROM
//! Object [WHERE condition] [ORDER BY field [ASC|DESC]] [LIMIT n]
//! [OFFSET n]`, with `AND`, `OR`, `NOT`, parentheses, `= != <> < <= > >=
//! LIKE IN NOT IN`, string, number, boolean, null and date/datetime
//! literals. Anything else is `MALFORMED_QUERY`, as in Salesforce.

use crate::time;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The selected fields.
    pub fields: Vec<String>,
    /// The object queried (`Lead`).
    pub object: String,
    /// The WHERE clause.
    pub filter: Option<Condition>,
    /// ORDER BY field, and whether descending.
    pub order_by: Option<(String, bool)>,
    /// LIMIT.
    pub limit: Option<usize>,
    /// OFFSET.
    pub offset: usize,
}

/// A WHERE condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Both hold.
    And(Box<Condition>, Box<Condition>),
    /// Either holds.
    Or(Box<Condition>, Box<Condition>),
    /// It does not hold.
    Not(Box<Condition>),
    /// `field op value`.
    Compare {
        /// The field.
        field: String,
        /// The operator.
        op: Op,
        /// The value.
        value: Literal,
    },
    /// `field [NOT] IN (values)`.
    In {
        /// The field.
        field: String,
        /// The values.
        values: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `LIKE` (`%` and `_` wildcards).
    Like,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A quoted string.
    Text(String),
    /// A number.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A date or datetime, in milliseconds since the epoch.
    Time(i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(&'static str),
}

fn tokenize(soql: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = soql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        let escaped = *chars.get(i + 1).ok_or("unterminated escape")?;
                        text.push(match escaped {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(text));
        } else if "(),".contains(c) {
            tokens.push(Token::Symbol(match c {
                '(' => "(",
                ')' => ")",
                _ => ",",
            }));
            i += 1;
        } else if "=<>!".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = match two.as_str() {
                "<=" => "<=",
                ">=" => ">=",
                "!=" => "!=",
                "<>" => "<>",
                _ => match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => return Err(format!("unexpected '{c}'")),
                },
            };
            i += symbol.len();
            tokens.push(Token::Symbol(symbol));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || ":.-+".contains(chars[i])) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            match text.parse::<f64>() {
                Ok(n) => tokens.push(Token::Number(n)),
                Err(_) => tokens.push(Token::Word(text)), // a date literal
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected '{c}'"));
        }
    }
    Ok(tokens)
}

/// Parentheses and NOTs nested deeper than this, or more conditions than
/// [`MAX_CONDITIONS`] in one WHERE, are refused: the parser, the matcher and
/// the tree's drop all recurse once per level.
const MAX_NESTING: usize = 32;
/// Conditions one WHERE may hold.
const MAX_CONDITIONS: usize = 200;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses and NOTs open around the current condition.
    nesting: usize,
    /// Conditions read so far.
    conditions: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), String> {
        if self.keyword(word) { Ok(()) } else { Err(format!("expected {word} at {}", self.describe())) }
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "end of query".into(),
            Some(Token::Word(w)) => format!("'{w}'"),
            Some(Token::Text(t)) => format!("'{t}'"),
            Some(Token::Number(n)) => n.to_string(),
            Some(Token::Symbol(s)) => format!("'{s}'"),
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Token::Word(w)) if !is_reserved(&w) => {
                self.at += 1;
                Ok(w)
            }
            _ => Err(format!("expected a field name at {}", self.describe())),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let token = self.peek().cloned().ok_or("expected a value at end of query")?;
        self.at += 1;
        Ok(match token {
            Token::Text(t) => Literal::Text(t),
            Token::Number(n) => Literal::Number(n),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Token::Word(w) => Literal::Time(time::parse(&w).ok_or_else(|| format!("'{w}' is not a valid value"))?),
            Token::Symbol(s) => return Err(format!("expected a value at '{s}'")),
        })
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Condition, String>) -> Result<Condition, String> {
        if self.nesting >= MAX_NESTING {
            return Err(format!("conditions nested more than {MAX_NESTING} deep at {}", self.describe()));
        }
        self.nesting += 1;
        let inner = read(self);
        self.nesting -= 1;
        inner
    }

    fn condition(&mut self) -> Result<Condition, String> {
        let mut left = self.conjunction()?;
        while self.keyword("OR") {
            left = Condition::Or(Box::new(left), Box::new(self.conjunction()?));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        while self.keyword("AND") {
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(format!("more than {MAX_CONDITIONS} conditions at {}", self.describe()));
        }
        if self.keyword("NOT") {
            let inner = self.nested(Self::unary)?;
            return Ok(Condition::Not(Box::new(inner)));
        }
        if self.symbol("(") {
            let inner = self.nested(Self::condition)?;
            if !self.symbol(")") {
                return Err(format!("expected ')' at {}", self.describe()));
            }
            return Ok(inner);
        }
        let field = self.identifier()?;
        let negated = self.keyword("NOT");
        if self.keyword("IN") {
            if !self.symbol("(") {
                return Err(format!("expected '(' after IN at {}", self.describe()));
            }
            let mut values = vec![self.literal()?];
            while self.symbol(",") {
                values.push(self.literal()?);
            }
            if !self.symbol(")") {
                return Err(format!("expected ')' at {}", self.describe()));
            }
            return Ok(Condition::In { field, values, negated });
        }
        if negated {
            return Err("NOT must be followed by IN here".into());
        }
        let op = if self.keyword("LIKE") {
            Op::Like
        } else {
            match self.peek() {
                Some(Token::Symbol(s)) => {
                    let op = match *s {
                        "=" => Op::Eq,
                        "!=" | "<>" => Op::Ne,
                        "<" => Op::Lt,
                        "<=" => Op::Le,
                        ">" => Op::Gt,
                        ">=" => Op::Ge,
                        _ => return Err(format!("unexpected '{s}'")),
                    };
                    self.at += 1;
                    op
                }
                _ => return Err(format!("expected an operator at {}", self.describe())),
            }
        };
        Ok(Condition::Compare { field, op, value: self.literal()? })
    }
}

fn is_reserved(word: &str) -> bool {
    ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET", "ASC", "DESC"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
}

/// Parses a query.
///
/// # Errors
///
/// A message in the spirit of Salesforce's `MALFORMED_QUERY`.
pub fn parse(soql: &str) -> Result<Query, String> {
    let mut p = Parser { tokens: tokenize(soql)?, at: 0, nesting: 0, conditions: 0 };
    p.expect_keyword("SELECT")?;
    let mut fields = vec![p.identifier()?];
    while p.symbol(",") {
        fields.push(p.identifier()?);
    }
    p.expect_keyword("FROM")?;
    let object = p.identifier()?;
    let filter = if p.keyword("WHERE") { Some(p.condition()?) } else { None };
    let mut order_by = None;
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        let field = p.identifier()?;
        let descending = if p.keyword("DESC") {
            true
        } else {
            p.keyword("ASC");
            false
        };
        order_by = Some((field, descending));
    }
    let mut limit = None;
    let mut offset = 0;
    if p.keyword("LIMIT") {
        match p.literal()? {
            Literal::Number(n) if n >= 0.0 => limit = Some(n as usize),
            _ => return Err("LIMIT takes a number".into()),
        }
    }
    if p.keyword("OFFSET") {
        match p.literal()? {
            Literal::Number(n) if n >= 0.0 => offset = n as usize,
            _ => return Err("OFFSET takes a number".into()),
        }
    }
    if p.peek().is_some() {
        return Err(format!("unexpected token {}", p.describe()));
    }
    Ok(Query { fields, object, filter, order_by, limit, offset })
}

/// A field's value in a record; field names match case-insensitively.
pub fn field<'a>(record: &'a Map<String, Value>, name: &str) -> &'a Value {
    match record.get(name) {
        Some(value) => value,
        None => record.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or(&Value::Null, |(_, v)| v),
    }
}

fn compare(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Literal::Null) => None,
        (Value::Number(n), Literal::Number(m)) => n.as_f64()?.partial_cmp(m),
        (Value::Bool(b), Literal::Bool(c)) => Some(b.cmp(c)),
        (Value::String(s), Literal::Time(t)) => time::parse(s).map(|v| v.cmp(t)),
        (Value::String(s), Literal::Text(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        (Value::String(s), Literal::Number(m)) => s.parse::<f64>().ok()?.partial_cmp(m),
        _ => None,
    }
}

fn like(value: &Value, pattern: &Literal) -> bool {
    let (Value::String(text), Literal::Text(pattern)) = (value, pattern) else {
        return false;
    };
    // Row by row over the pattern (`%` any run, `_` one character): time
    // text × pattern, where backtracking was exponential in the `%`s.
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for c in &p {
        let mut next = vec![false; t.len() + 1];
        for i in 0..=t.len() {
            next[i] = match c {
                '%' => row[i] || (i > 0 && next[i - 1]),
                '_' => i > 0 && row[i - 1],
                c => i > 0 && row[i - 1] && t[i - 1] == *c,
            };
        }
        row = next;
    }
    row[t.len()]
}

/// Whether `record` satisfies `condition`.
pub fn matches(record: &Map<String, Value>, condition: &Condition) -> bool {
    match condition {
        Condition::And(a, b) => matches(record, a) && matches(record, b),
        Condition::Or(a, b) => matches(record, a) || matches(record, b),
        Condition::Not(a) => !matches(record, a),
        Condition::In { field: name, values, negated } => {
            let value = field(record, name);
            values.iter().any(|v| compare(value, v) == Some(Ordering::Equal)) != *negated
        }
        Condition::Compare { field: name, op, value: literal } => {
            let value = field(record, name);
            let ordering = compare(value, literal);
            match op {
                Op::Eq => ordering == Some(Ordering::Equal),
                Op::Ne => ordering != Some(Ordering::Equal),
                Op::Lt => ordering == Some(Ordering::Less),
                Op::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ordering == Some(Ordering::Greater),
                Op::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
                Op::Like => like(value, literal),
            }
        }
    }
}

/// Fields a condition mentions (to check they exist).
pub fn condition_fields(condition: &Condition, out: &mut Vec<String>) {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => {
            condition_fields(a, out);
            condition_fields(b, out);
        }
        Condition::Not(a) => condition_fields(a, out),
        Condition::Compare { field, .. } | Condition::In { field, .. } => out.push(field.clone()),
    }
}

/// Orders two records by a field, nulls first as Salesforce does ascending.
pub fn order(a: &Map<String, Value>, b: &Map<String, Value>, name: &str) -> Ordering {
    let (x, y) = (field(a, name), field(b, name));
    match (x, y) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(m), Value::Number(n)) => m.as_f64().partial_cmp(&n.as_f64()).unwrap_or(Ordering::Equal),
        (Value::String(s), Value::String(t)) => match (time::parse(s), time::parse(t)) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => s.to_lowercase().cmp(&t.to_lowercase()),
        },
        (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_what_the_connector_sends() {
        let q = parse("SELECT Id, Email FROM Lead WHERE Email = 'o\\'brien@x.com' AND IsConverted = false ORDER BY CreatedDate DESC LIMIT 1").unwrap();
        assert_eq!(q.object, "Lead");
        assert_eq!(q.fields, ["Id", "Email"]);
        assert_eq!(q.order_by, Some(("CreatedDate".into(), true)));
        assert_eq!(q.limit, Some(1));
        let lead = record(json!({"Email": "O'Brien@x.com", "IsConverted": false}));
        assert!(matches(&lead, q.filter.as_ref().unwrap()), "string equality ignores case");
    }

    #[test]
    fn dates_in_and_like() {
        let q = parse("SELECT Id FROM Task WHERE WhoId IN ('a', 'b') AND CreatedDate > 2026-01-01T00:00:00Z AND Subject LIKE 'call%'").unwrap();
        let yes = record(json!({"WhoId": "b", "CreatedDate": "2026-02-01T10:00:00.000+0000", "Subject": "Call back"}));
        let old = record(json!({"WhoId": "b", "CreatedDate": "2025-12-31T10:00:00.000+0000", "Subject": "Call back"}));
        assert!(matches(&yes, q.filter.as_ref().unwrap()));
        assert!(!matches(&old, q.filter.as_ref().unwrap()));
    }

    #[test]
    fn or_not_and_parentheses() {
        let q = parse("SELECT Id FROM Account WHERE NOT (Industry = 'Retail' OR NumberOfEmployees < 100)").unwrap();
        assert!(matches(&record(json!({"Industry": "Tech", "NumberOfEmployees": 500})), q.filter.as_ref().unwrap()));
        assert!(!matches(&record(json!({"Industry": "Tech", "NumberOfEmployees": 50})), q.filter.as_ref().unwrap()));
    }

    #[test]
    fn deep_or_long_conditions_are_refused_and_like_is_not_exponential() {
        // Found by the fuzzer: 2,000 nested parentheses overflowed the stack.
        let deep = format!("SELECT Id FROM Lead WHERE {}Email = 'a'{}", "(".repeat(2000), ")".repeat(2000));
        assert!(parse(&deep).unwrap_err().contains("nested more than 32"));
        let nots = format!("SELECT Id FROM Lead WHERE {}Email = 'a'", "NOT ".repeat(2000));
        assert!(parse(&nots).is_err());
        let long = format!("SELECT Id FROM Lead WHERE Email = 'a'{}", " AND Email = 'a'".repeat(300));
        assert!(parse(&long).unwrap_err().contains("more than 200 conditions"));
        assert!(parse(&format!("SELECT Id FROM Lead WHERE {}Email = 'a'{}", "(".repeat(30), ")".repeat(30))).is_ok());
        let text = "a".repeat(200);
        let pattern = Literal::Text(format!("{}b", "%a".repeat(30)));
        assert!(!like(&Value::String(text.clone()), &pattern));
        assert!(like(&Value::String(text), &Literal::Text("%a_a%".into())));
        assert!(like(&Value::String("Acme.com".into()), &Literal::Text("%ACME%".into())));
        assert!(!like(&Value::String("acme".into()), &Literal::Text("acme_".into())));
    }

    #[test]
    fn malformed_queries_say_where() {
        for (bad, needle) in [
            ("SELECT FROM Lead", "field name"),
            ("SELECT Id Lead", "expected FROM"),
            ("SELECT Id FROM Lead WHERE Email = ", "value"),
            ("SELECT Id FROM Lead WHERE Email 'x'", "operator"),
            ("SELECT Id FROM Lead LIMIT x", "value"),
            ("SELECT Id FROM Lead WHERE Name = 'x", "unterminated"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
