//! A SOQL subset: `SELECT fields FROM Obj [WHERE …] [ORDER BY …] [LIMIT n]
//! [OFFSET n]`, with `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`, `LIKE`,
//! `[NOT] IN (…)`, `AND`/`OR`/`NOT`, parentheses, one level of parent
//! relationship fields (`Account.Name`) and `COUNT()`. Errors mimic the
//! platform's framing (`ERROR at Row:1:Column:N`).

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::describe::{self, FieldDef, FieldType, ObjectDef};
use crate::errors::ApiError;
use crate::ids;
use crate::render;
use crate::state::{Record, Store};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    /// Unquoted date or datetime literal.
    Date(String),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Character offset in the query, for error framing.
    pos: usize,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

#[derive(Debug, Clone)]
struct PathRef {
    text: String,
    pos: usize,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(PathRef, Op, Literal),
    In(PathRef, bool, Vec<Literal>),
}

#[derive(Debug, Clone)]
struct OrderItem {
    path: PathRef,
    desc: bool,
    nulls_last: bool,
}

#[derive(Debug, Clone)]
struct Parsed {
    count_only: bool,
    select: Vec<PathRef>,
    object: PathRef,
    filter: Option<Expr>,
    order: Vec<OrderItem>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// A field path resolved against the schema.
#[derive(Debug, Clone, Copy)]
enum Field {
    Direct(&'static FieldDef),
    Parent {
        via: &'static FieldDef,
        target: &'static ObjectDef,
        field: &'static FieldDef,
    },
}

impl Field {
    fn ftype(self) -> FieldType {
        match self {
            Field::Direct(f) | Field::Parent { field: f, .. } => f.ftype,
        }
    }
}

pub struct QueryResult {
    pub count_only: bool,
    pub records: Vec<Value>,
}

/// Frames a message the way the platform does: the offending line, a caret
/// under the column, then `ERROR at Row:r:Column:c`.
fn framed(query: &str, pos: usize, msg: &str) -> String {
    let mut row = 1;
    let mut col = 1;
    let mut line_start = 0;
    for (i, c) in query.chars().enumerate() {
        if i == pos {
            break;
        }
        if c == '\n' {
            row += 1;
            col = 1;
            line_start = i + 1;
        } else {
            col += 1;
        }
    }
    let line: String = query
        .chars()
        .skip(line_start)
        .take_while(|c| *c != '\n')
        .collect();
    format!(
        "\n{line}\n{}^\nERROR at Row:{row}:Column:{col}\n{msg}",
        " ".repeat(col - 1)
    )
}

fn malformed(query: &str, pos: usize, msg: &str) -> ApiError {
    ApiError::new(400, "MALFORMED_QUERY", framed(query, pos, msg))
}

fn tokenize(q: &str) -> Result<Vec<Token>, ApiError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.'))
            {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(malformed(q, start, "unterminated string literal")),
                    Some('\\') => {
                        let esc = chars.get(i + 1).copied();
                        // LIKE's escapes stay escapes (`\%` is a literal %).
                        if matches!(esc, Some('%' | '_')) {
                            s.push('\\');
                        }
                        s.push(match esc {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some(other) => other,
                            None => return Err(malformed(q, start, "unterminated string literal")),
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | ':' | '+'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.parse::<f64>().is_ok() {
                Tok::Num(text)
            } else if is_date_literal(&text) {
                Tok::Date(text)
            } else {
                return Err(malformed(q, start, &format!("unexpected token: {text}")));
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(s) = sym {
                i += 2;
                Tok::Sym(s)
            } else {
                i += 1;
                Tok::Sym(match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    _ => return Err(malformed(q, start, &format!("unexpected token: {c}"))),
                })
            }
        };
        out.push(Token {
            tok,
            pos: start,
            text: chars[start..i].iter().collect(),
        });
    }
    Ok(out)
}

fn is_date_literal(s: &str) -> bool {
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2}))?$")
            .expect("valid regex")
    });
    RE.is_match(s)
}

struct Parser<'q> {
    q: &'q str,
    toks: Vec<Token>,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn end_pos(&self) -> usize {
        self.q.chars().count()
    }

    fn err_here(&self, msg: Option<&str>) -> ApiError {
        match self.peek() {
            Some(t) => {
                let m = msg.map_or_else(|| format!("unexpected token: {}", t.text), str::to_string);
                malformed(self.q, t.pos, &m)
            }
            None => malformed(
                self.q,
                self.end_pos(),
                msg.unwrap_or("unexpected token: <EOF>"),
            ),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Ident(s), .. }) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.is_kw(kw);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ApiError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err_here(None))
        }
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Sym(x), .. }) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        let hit = self.is_sym(s);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ApiError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.err_here(None))
        }
    }

    fn ident(&mut self) -> Result<PathRef, ApiError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Ident(s),
                pos,
                ..
            }) if !is_reserved(s) => {
                let p = PathRef {
                    text: s.clone(),
                    pos: *pos,
                };
                self.i += 1;
                Ok(p)
            }
            _ => Err(self.err_here(None)),
        }
    }

    fn number(&mut self) -> Result<usize, ApiError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Num(n), ..
            }) => {
                let v = n.parse::<usize>().map_err(|_| self.err_here(None))?;
                self.i += 1;
                Ok(v)
            }
            _ => Err(self.err_here(None)),
        }
    }

    fn parse(mut self) -> Result<Parsed, ApiError> {
        self.expect_kw("SELECT")?;
        let mut count_only = false;
        let mut select = Vec::new();
        if self.is_kw("COUNT")
            && matches!(
                self.toks.get(self.i + 1),
                Some(Token {
                    tok: Tok::Sym("("),
                    ..
                })
            )
        {
            self.i += 1;
            self.expect_sym("(")?;
            self.expect_sym(")")?;
            count_only = true;
        } else {
            loop {
                select.push(self.ident()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_kw("FROM")?;
        let object = self.ident()?;
        let filter = if self.eat_kw("WHERE") {
            Some(self.or_expr()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let path = self.ident()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                // The platform sorts nulls first ascending, last descending.
                let mut nulls_last = desc;
                if self.eat_kw("NULLS") {
                    if self.eat_kw("LAST") {
                        nulls_last = true;
                    } else {
                        self.expect_kw("FIRST")?;
                        nulls_last = false;
                    }
                }
                order.push(OrderItem {
                    path,
                    desc,
                    nulls_last,
                });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.number()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.number()?)
        } else {
            None
        };
        if self.peek().is_some() {
            return Err(self.err_here(None));
        }
        Ok(Parsed {
            count_only,
            select,
            object,
            filter,
            order,
            limit,
            offset,
        })
    }

    fn or_expr(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.and_expr()?;
        while self.eat_kw("OR") {
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.unary()?;
        while self.eat_kw("AND") {
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ApiError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_sym("(") {
            let e = self.or_expr()?;
            self.expect_sym(")")?;
            return Ok(e);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ApiError> {
        let path = self.ident()?;
        let negated_in = self.is_kw("NOT")
            && matches!(self.toks.get(self.i + 1), Some(Token { tok: Tok::Ident(s), .. }) if s.eq_ignore_ascii_case("IN"));
        if negated_in {
            self.i += 1;
        }
        if self.eat_kw("IN") {
            self.expect_sym("(")?;
            let mut values = vec![self.literal()?];
            while self.eat_sym(",") {
                values.push(self.literal()?);
            }
            self.expect_sym(")")?;
            return Ok(Expr::In(path, negated_in, values));
        }
        let op = if self.eat_kw("LIKE") {
            Op::Like
        } else {
            let op = match self.peek().map(|t| &t.tok) {
                Some(Tok::Sym("=")) => Op::Eq,
                Some(Tok::Sym("!=" | "<>")) => Op::Ne,
                Some(Tok::Sym("<")) => Op::Lt,
                Some(Tok::Sym("<=")) => Op::Le,
                Some(Tok::Sym(">")) => Op::Gt,
                Some(Tok::Sym(">=")) => Op::Ge,
                _ => return Err(self.err_here(None)),
            };
            self.i += 1;
            op
        };
        let lit = self.literal()?;
        Ok(Expr::Cmp(path, op, lit))
    }

    fn literal(&mut self) -> Result<Literal, ApiError> {
        let lit = match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(s) | Tok::Date(s)) => Literal::Str(s.clone()),
            Some(Tok::Num(n)) => Literal::Num(n.parse().map_err(|_| self.err_here(None))?),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.err_here(None)),
        };
        self.i += 1;
        Ok(lit)
    }
}

fn is_reserved(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT",
        "OFFSET", "ASC", "DESC", "NULLS", "NULL", "TRUE", "FALSE",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

fn no_such_column(q: &str, p: &PathRef, obj: &ObjectDef) -> ApiError {
    ApiError::new(
        400,
        "INVALID_FIELD",
        framed(
            q,
            p.pos,
            &format!(
                "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                p.text.rsplit('.').next().unwrap_or(&p.text),
                obj.name
            ),
        ),
    )
}

fn resolve(q: &str, obj: &'static ObjectDef, p: &PathRef) -> Result<Field, ApiError> {
    let parts: Vec<&str> = p.text.split('.').collect();
    match parts.as_slice() {
        [name] => obj
            .field(name)
            .map(Field::Direct)
            .ok_or_else(|| no_such_column(q, p, obj)),
        [rel, name] => {
            let via = obj
                .relationship(rel)
                .filter(|f| f.reference_to.len() == 1)
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALID_FIELD",
                        framed(
                            q,
                            p.pos,
                            &format!(
                                "Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                            ),
                        ),
                    )
                })?;
            let target =
                describe::object(via.reference_to[0]).ok_or_else(|| no_such_column(q, p, obj))?;
            let field = target
                .field(name)
                .ok_or_else(|| no_such_column(q, p, target))?;
            Ok(Field::Parent { via, target, field })
        }
        _ => Err(malformed(
            q,
            p.pos,
            &format!("unexpected token: {}", p.text),
        )),
    }
}

fn parent<'s>(
    store: &'s Store,
    via: &FieldDef,
    target: &ObjectDef,
    rec: &Record,
) -> Option<&'s Record> {
    let id = rec.get(via.name)?.as_str()?;
    store.get(target.name, id)
}

fn value_of(store: &Store, rec: &Record, f: Field) -> Value {
    match f {
        Field::Direct(fd) => rec.get(fd.name).cloned().unwrap_or(Value::Null),
        Field::Parent { via, target, field } => parent(store, via, target, rec)
            .and_then(|p| p.get(field.name).cloned())
            .unwrap_or(Value::Null),
    }
}

/// SOQL text comparison is case-insensitive; ids compare on their
/// case-sensitive 15-character key.
fn compare(v: &Value, lit: &Literal, ftype: FieldType) -> Option<Ordering> {
    match (v, lit) {
        (Value::String(a), Literal::Str(b)) => {
            if matches!(ftype, FieldType::Id | FieldType::Reference) {
                let (ka, kb) = (ids::key(a).unwrap_or(a), ids::key(b).unwrap_or(b));
                Some(ka.cmp(kb))
            } else {
                Some(a.to_lowercase().cmp(&b.to_lowercase()))
            }
        }
        (Value::Number(a), Literal::Num(b)) => a.as_f64()?.partial_cmp(b),
        (Value::String(a), Literal::Num(b)) => a.parse::<f64>().ok()?.partial_cmp(b),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn like(v: &Value, pattern: &Literal) -> bool {
    let (Value::String(s), Literal::Str(p)) = (v, pattern) else {
        return false;
    };
    let mut re = String::from("(?is)^");
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).is_ok_and(|r| r.is_match(s))
}

struct Compiled {
    expr: CExpr,
}

enum CExpr {
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Not(Box<CExpr>),
    Cmp(Field, Op, Literal),
    In(Field, bool, Vec<Literal>),
}

fn compile(q: &str, obj: &'static ObjectDef, e: &Expr) -> Result<CExpr, ApiError> {
    Ok(match e {
        Expr::And(a, b) => CExpr::And(Box::new(compile(q, obj, a)?), Box::new(compile(q, obj, b)?)),
        Expr::Or(a, b) => CExpr::Or(Box::new(compile(q, obj, a)?), Box::new(compile(q, obj, b)?)),
        Expr::Not(a) => CExpr::Not(Box::new(compile(q, obj, a)?)),
        Expr::Cmp(p, op, lit) => CExpr::Cmp(resolve(q, obj, p)?, *op, lit.clone()),
        Expr::In(p, neg, lits) => CExpr::In(resolve(q, obj, p)?, *neg, lits.clone()),
    })
}

impl Compiled {
    fn eval(&self, store: &Store, rec: &Record) -> bool {
        eval(&self.expr, store, rec)
    }
}

fn eval(e: &CExpr, store: &Store, rec: &Record) -> bool {
    match e {
        CExpr::And(a, b) => eval(a, store, rec) && eval(b, store, rec),
        CExpr::Or(a, b) => eval(a, store, rec) || eval(b, store, rec),
        CExpr::Not(a) => !eval(a, store, rec),
        CExpr::Cmp(f, op, lit) => {
            let v = value_of(store, rec, *f);
            if *lit == Literal::Null {
                return match op {
                    Op::Eq => v.is_null(),
                    Op::Ne => !v.is_null(),
                    _ => false,
                };
            }
            if v.is_null() {
                // Null is "not equal" to any value, and unordered.
                return *op == Op::Ne;
            }
            if *op == Op::Like {
                return like(&v, lit);
            }
            let Some(ord) = compare(&v, lit, f.ftype()) else {
                return *op == Op::Ne;
            };
            match op {
                Op::Eq => ord == Ordering::Equal,
                Op::Ne => ord != Ordering::Equal,
                Op::Lt => ord == Ordering::Less,
                Op::Le => ord != Ordering::Greater,
                Op::Gt => ord == Ordering::Greater,
                Op::Ge => ord != Ordering::Less,
                Op::Like => unreachable!("handled above"),
            }
        }
        CExpr::In(f, negated, lits) => {
            let v = value_of(store, rec, *f);
            let hit = lits.iter().any(|lit| match lit {
                Literal::Null => v.is_null(),
                _ => compare(&v, lit, f.ftype()) == Some(Ordering::Equal),
            });
            hit != *negated
        }
    }
}

fn order_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            x.to_lowercase().cmp(&y.to_lowercase()).then(x.cmp(y))
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// Runs `soql` against the store. Records come back fully rendered for
/// `version`, in the order the query asks (creation order otherwise).
pub fn run(store: &Store, soql: &str, version: &str) -> Result<QueryResult, ApiError> {
    let toks = tokenize(soql)?;
    let parsed = Parser {
        q: soql,
        toks,
        i: 0,
    }
    .parse()?;
    let obj = describe::object(&parsed.object.text).ok_or_else(|| {
        ApiError::new(
            400,
            "INVALID_TYPE",
            framed(
                soql,
                parsed.object.pos,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    parsed.object.text
                ),
            ),
        )
    })?;

    let mut select = Vec::with_capacity(parsed.select.len());
    let mut seen: Vec<String> = Vec::new();
    for p in &parsed.select {
        let f = resolve(soql, obj, p)?;
        let canonical = match f {
            Field::Direct(fd) => fd.name.to_string(),
            Field::Parent { via, field, .. } => {
                format!(
                    "{}.{}",
                    via.relationship_name.unwrap_or_default(),
                    field.name
                )
            }
        };
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&canonical)) {
            return Err(malformed(
                soql,
                p.pos,
                &format!("duplicate field selected: {}", p.text),
            ));
        }
        seen.push(canonical);
        select.push(f);
    }
    let filter = parsed
        .filter
        .as_ref()
        .map(|e| compile(soql, obj, e).map(|expr| Compiled { expr }))
        .transpose()?;
    let order: Vec<(Field, &OrderItem)> = parsed
        .order
        .iter()
        .map(|o| resolve(soql, obj, &o.path).map(|f| (f, o)))
        .collect::<Result<_, _>>()?;

    let mut rows: Vec<&Record> = store
        .table(obj.name)
        .filter(|r| filter.as_ref().is_none_or(|c| c.eval(store, r)))
        .collect();
    if !order.is_empty() {
        rows.sort_by(|a, b| {
            for (f, o) in &order {
                let (va, vb) = (value_of(store, a, *f), value_of(store, b, *f));
                let ord = match (va.is_null(), vb.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => {
                        if o.nulls_last {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    (false, true) => {
                        if o.nulls_last {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    (false, false) => {
                        let c = order_cmp(&va, &vb);
                        if o.desc { c.reverse() } else { c }
                    }
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let rows = rows
        .into_iter()
        .skip(parsed.offset.unwrap_or(0))
        .take(parsed.limit.unwrap_or(usize::MAX));

    if parsed.count_only {
        let n = rows.count();
        return Ok(QueryResult {
            count_only: true,
            records: vec![Value::Null; n],
        });
    }
    let records = rows
        .map(|r| shape(store, obj, r, &select, version))
        .collect();
    Ok(QueryResult {
        count_only: false,
        records,
    })
}

/// One result row: selected fields, parent fields nested under their
/// relationship name with their own `attributes` (or null without a parent).
fn shape(store: &Store, obj: &ObjectDef, rec: &Record, select: &[Field], version: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        render::attributes(obj.name, render::id_of(rec), version),
    );
    for f in select {
        match *f {
            Field::Direct(fd) => {
                out.insert(fd.name.into(), render::field_value(obj, fd, rec, version));
            }
            Field::Parent { via, target, field } => {
                let rel = via.relationship_name.unwrap_or(via.name);
                match parent(store, via, target, rec) {
                    None => {
                        out.insert(rel.into(), Value::Null);
                    }
                    Some(p) => {
                        let entry = out.entry(rel).or_insert_with(|| {
                            json!({ "attributes": render::attributes(target.name, render::id_of(p), version) })
                        });
                        if let Some(m) = entry.as_object_mut() {
                            m.insert(
                                field.name.into(),
                                render::field_value(target, field, p, version),
                            );
                        }
                    }
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed;

    fn store() -> Store {
        let mut s = Store::new();
        seed::seed(&mut s);
        s
    }

    #[test]
    fn open_cases_and_comments_are_queryable() {
        let mut s = store();
        let ctx = crate::dml::WriteCtx {
            rules: &[],
            now: "2026-01-05T09:00:00.000+0000",
        };
        let case = describe::object("Case").unwrap();
        let asset = s.table("Asset").next().unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let body = |v: Value| v.as_object().unwrap().clone();
        let open = crate::dml::create(
            &mut s,
            case,
            body(json!({"Subject": "Open", "AssetId": asset})),
            None,
            &ctx,
        )
        .unwrap();
        let shut = crate::dml::create(
            &mut s,
            case,
            body(json!({"Subject": "Shut", "AssetId": asset, "Status": "Closed"})),
            None,
            &ctx,
        )
        .unwrap();
        let q = format!(
            "SELECT Id, IsClosed FROM Case WHERE AssetId = '{asset}' AND IsClosed = false AND CreatedDate >= 2026-01-01T00:00:00Z ORDER BY CreatedDate DESC LIMIT 5"
        );
        let r = run(&s, &q, "66.0").unwrap();
        let ids: Vec<&str> = r
            .records
            .iter()
            .map(|r| r["Id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&open.as_str()) && !ids.contains(&shut.as_str()),
            "{ids:?}"
        );
        assert_eq!(r.records[0]["IsClosed"], false);
        let q = format!(
            "SELECT Id FROM Case WHERE AssetId = '{asset}' AND CreatedDate >= 2027-01-01T00:00:00Z"
        );
        assert_eq!(
            run(&s, &q, "66.0").unwrap().records.len(),
            0,
            "outside the window"
        );
        let comment = describe::object("CaseComment").unwrap();
        let c = crate::dml::create(
            &mut s,
            comment,
            body(json!({"ParentId": open, "CommentBody": "again [fieldgate 01X]"})),
            None,
            &ctx,
        )
        .unwrap();
        let q = format!(
            "SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{}'",
            &open[..15]
        );
        let r = run(&s, &q, "66.0").unwrap();
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0]["Id"], c.as_str());
        assert_eq!(r.records[0]["CommentBody"], "again [fieldgate 01X]");
    }

    #[test]
    fn parse_errors_are_framed_like_the_platform() {
        let e = run(&store(), "SELECT Id FRM Account", "66.0")
            .err()
            .unwrap();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert_eq!(
            e.message,
            "\nSELECT Id FRM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: FRM"
        );
        let e = run(&store(), "SELECT Id FROM Account WHERE Name = 'x", "66.0")
            .err()
            .unwrap();
        assert!(e.message.contains("unterminated"), "{}", e.message);
        let e = run(&store(), "SELECT Id FROM Account LIMIT", "66.0")
            .err()
            .unwrap();
        assert!(
            e.message.ends_with("unexpected token: <EOF>"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_field_and_object() {
        let e = run(&store(), "SELECT Id, Nope FROM Asset", "66.0")
            .err()
            .unwrap();
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(
            e.message
                .contains("No such column 'Nope' on entity 'Asset'")
        );
        let e = run(&store(), "SELECT Id FROM Widget__c", "66.0")
            .err()
            .unwrap();
        assert_eq!(e.code, "INVALID_TYPE");
        let e = run(&store(), "SELECT Owner.Name FROM Asset", "66.0")
            .err()
            .unwrap();
        assert_eq!(e.code, "INVALID_FIELD");
    }

    #[test]
    fn filters_like_in_or_and_order() {
        let s = store();
        let r = run(
            &s,
            "select name, serialnumber from asset where Name like '%chiller%' or SerialNumber IN ('GEN-2-5530-K') order by Name desc",
            "66.0",
        )
        .unwrap();
        let names: Vec<&str> = r
            .records
            .iter()
            .map(|v| v["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["Water-Cooled Chiller CH-1", "Backup Diesel Generator G2"]
        );

        let r = run(
            &s,
            "SELECT Id FROM Asset WHERE Description = null AND NOT Name LIKE 'Rooftop%'",
            "66.0",
        )
        .unwrap();
        assert_eq!(r.records.len(), seed::ASSETS.len() - 1);
        let r = run(
            &s,
            "SELECT Id FROM Asset WHERE Name != 'Rooftop HVAC Unit 3' LIMIT 2 OFFSET 1",
            "66.0",
        )
        .unwrap();
        assert_eq!(r.records.len(), 2);
        let r = run(&s, "SELECT COUNT() FROM Account", "66.0").unwrap();
        assert!(r.count_only);
        assert_eq!(r.records.len(), 3);
    }

    #[test]
    fn relationship_fields_nest_and_filter() {
        let s = store();
        let r = run(
            &s,
            "SELECT Id, Name, Account.Name, Location.Name FROM Asset WHERE Account.Name = 'northwind logistics' ORDER BY Name",
            "66.0",
        )
        .unwrap();
        assert_eq!(r.records.len(), 2);
        let first = &r.records[0];
        assert_eq!(first["Account"]["Name"], "Northwind Logistics");
        assert_eq!(first["Account"]["attributes"]["type"], "Account");
        assert!(first["Location"]["Name"].is_string());
        assert!(
            first["attributes"]["url"]
                .as_str()
                .unwrap()
                .starts_with("/services/data/v66.0/sobjects/Asset/02i")
        );
    }

    #[test]
    fn id_literals_match_on_15_chars() {
        let s = store();
        let id = seed::asset_ids()[0].clone();
        let q = format!("SELECT Name FROM Asset WHERE Id = '{}'", &id[..15]);
        assert_eq!(run(&s, &q, "66.0").unwrap().records.len(), 1);
        let q = format!("SELECT Name FROM Asset WHERE Id = '{}Z'", &id[..14]);
        assert_eq!(run(&s, &q, "66.0").unwrap().records.len(), 0);
    }
}
