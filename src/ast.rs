//! What a parsed Rust file contains: counts of its syntax ([`AstStats`]), and per function a
//! cyclomatic complexity and a nesting depth, with the file's debt markers ([`FileAnalysis`]).

use syn::visit::{self, Visit};

/// Counts of the syntax a file contains, from a [`syn::visit`] walk of its AST.
///
/// Code inside macro invocations is not counted: it is an opaque token stream until the
/// compiler expands the macro.
///
/// ```
/// use instrument_workspace::ast::AstStats;
///
/// let file = syn::parse_file(
///     "struct A; impl A { unsafe fn f() { unsafe {} } } async fn g() { let _ = || 1; }",
/// )?;
/// let stats = AstStats::of(&file);
/// assert_eq!((stats.items, stats.structs, stats.impls), (3, 1, 1));
/// assert_eq!((stats.functions, stats.async_functions, stats.unsafe_functions), (2, 1, 1));
/// assert_eq!((stats.unsafe_blocks, stats.closures), (1, 1));
/// # Ok::<(), syn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AstStats {
    /// Items at any depth: functions, types, impls, modules, uses, consts, macros, ...
    pub items: u64,
    /// Free functions, methods and trait methods (with or without a body).
    pub functions: u64,
    /// Of those, `async fn`s.
    pub async_functions: u64,
    /// Of those, `unsafe fn`s.
    pub unsafe_functions: u64,
    /// `unsafe { ... }` blocks.
    pub unsafe_blocks: u64,
    /// `unsafe impl`s.
    pub unsafe_impls: u64,
    /// Structs.
    pub structs: u64,
    /// Enums.
    pub enums: u64,
    /// Traits.
    pub traits: u64,
    /// `impl` blocks.
    pub impls: u64,
    /// `macro_rules!` definitions.
    pub macro_rules: u64,
    /// Macro invocations, in any position.
    pub macro_calls: u64,
    /// Closures.
    pub closures: u64,
}

impl AstStats {
    /// Walks `file` and counts.
    #[must_use]
    pub fn of(file: &syn::File) -> Self {
        FileAnalysis::of(file, "").stats
    }
}

impl std::ops::AddAssign for AstStats {
    fn add_assign(&mut self, other: AstStats) {
        self.items += other.items;
        self.functions += other.functions;
        self.async_functions += other.async_functions;
        self.unsafe_functions += other.unsafe_functions;
        self.unsafe_blocks += other.unsafe_blocks;
        self.unsafe_impls += other.unsafe_impls;
        self.structs += other.structs;
        self.enums += other.enums;
        self.traits += other.traits;
        self.impls += other.impls;
        self.macro_rules += other.macro_rules;
        self.macro_calls += other.macro_calls;
        self.closures += other.closures;
    }
}

/// Where a function is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// A free function (at module level, or nested in another function's body).
    Free,
    /// A function in an `impl` block (a method or an associated function).
    Method,
    /// A function declared in a `trait`, with or without a default body.
    TraitMethod,
}

impl FunctionKind {
    /// `free`, `method` or `trait_method`, as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Free => "free",
            FunctionKind::Method => "method",
            FunctionKind::TraitMethod => "trait_method",
        }
    }
}

/// What one function looks like.
///
/// The **cyclomatic complexity** is the classic decision count, taken on the syntax: 1, plus one for each
/// `if` (an `else if` is another `if`), `while`, `for`, match arm after the first, match guard,
/// `&&`, `||`, `?` (an early return), and `let ... else`. Closures belong to the function they
/// are written in; a function declared inside another is a function of its own.
///
/// The **nesting depth** is the deepest nesting of `if`, `match`, `while`, `for`, `loop`,
/// closures, and `unsafe`, `async`, `const` and plain blocks inside the body, which is depth
/// 0; an `else if` stays at its `if`'s depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionMetrics {
    /// `name`, `Type::name` (in an `impl` of `Type`, the last segment of its path) or
    /// `Trait::name`, prefixed by the inline modules it is declared in (`tests::name`).
    pub name: String,
    /// Free function, method, trait method.
    pub kind: FunctionKind,
    /// `async fn`.
    pub is_async: bool,
    /// `unsafe fn`.
    pub is_unsafe: bool,
    /// Whether it has a body (a trait method may not).
    pub has_body: bool,
    /// Parameters, `self` included.
    pub params: u32,
    /// Statements in its body and every block in it.
    pub statements: u32,
    /// The cyclomatic complexity (see the type's docs).
    pub complexity: u32,
    /// The nesting depth (see the type's docs).
    pub max_nesting: u32,
    /// `unsafe { ... }` blocks in its body.
    pub unsafe_blocks: u32,
}

/// Debt markers of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebtMarkers {
    /// Occurrences of `TODO` in the text (comments included, which the AST does not keep).
    pub todo: u32,
    /// Occurrences of `FIXME` in the text.
    pub fixme: u32,
    /// `unsafe` in the syntax: `unsafe` blocks, functions, impls and traits.
    pub unsafe_code: u32,
}

/// Everything the analysis stage finds in one file.
///
/// ```
/// use instrument_workspace::ast::FileAnalysis;
///
/// let text = "// TODO: split\nfn f(x: Option<u8>) -> Option<u8> {\n    if x? > 1 && true { loop { if false {} } }\n    None\n}";
/// let analysis = FileAnalysis::of(&syn::parse_file(text)?, text);
/// let f = &analysis.functions[0];
/// // 1 + `?` + `if` + `&&` + the inner `if`.
/// assert_eq!((f.name.as_str(), f.complexity, f.max_nesting), ("f", 5, 3));
/// assert_eq!((analysis.debt.todo, analysis.max_complexity, analysis.max_nesting), (1, 5, 3));
/// # Ok::<(), syn::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileAnalysis {
    /// Counts of its syntax.
    pub stats: AstStats,
    /// Every function, in the order their bodies end (a nested function before the one it is
    /// declared in).
    pub functions: Vec<FunctionMetrics>,
    /// The highest cyclomatic complexity of its functions (0 without functions).
    pub max_complexity: u32,
    /// The deepest nesting of its functions (0 without functions).
    pub max_nesting: u32,
    /// `TODO`, `FIXME` and `unsafe`.
    pub debt: DebtMarkers,
}

impl FileAnalysis {
    /// Walks `file`, and scans `text` (its source) for `TODO` and `FIXME`.
    #[must_use]
    pub fn of(file: &syn::File, text: &str) -> Self {
        let mut walker = Walker::default();
        walker.visit_file(file);
        let max_complexity = walker
            .functions
            .iter()
            .map(|f| f.complexity)
            .max()
            .unwrap_or(0);
        let max_nesting = walker
            .functions
            .iter()
            .map(|f| f.max_nesting)
            .max()
            .unwrap_or(0);
        let s = &walker.stats;
        let debt = DebtMarkers {
            todo: count(text, "TODO"),
            fixme: count(text, "FIXME"),
            unsafe_code: u32::try_from(
                s.unsafe_blocks + s.unsafe_functions + s.unsafe_impls + walker.unsafe_traits,
            )
            .unwrap_or(u32::MAX),
        };
        FileAnalysis {
            stats: walker.stats,
            functions: walker.functions,
            max_complexity,
            max_nesting,
            debt,
        }
    }
}

fn count(text: &str, marker: &str) -> u32 {
    u32::try_from(text.matches(marker).count()).unwrap_or(u32::MAX)
}

/// A function being walked.
struct Frame {
    metrics: FunctionMetrics,
    depth: u32,
}

/// The walk: counts for the whole file, and a stack of the functions it is inside.
#[derive(Default)]
struct Walker {
    stats: AstStats,
    unsafe_traits: u64,
    /// Inline modules, `impl` types and traits the walk is inside.
    scope: Vec<String>,
    frames: Vec<Frame>,
    functions: Vec<FunctionMetrics>,
}

impl Walker {
    fn frame(&mut self) -> Option<&mut Frame> {
        self.frames.last_mut()
    }

    fn decision(&mut self, n: u32) {
        if let Some(f) = self.frame() {
            f.metrics.complexity += n;
        }
    }

    /// Runs `walk` one level deeper in the current function.
    fn nested(&mut self, walk: impl FnOnce(&mut Self)) {
        if let Some(f) = self.frame() {
            f.depth += 1;
            f.metrics.max_nesting = f.metrics.max_nesting.max(f.depth);
        }
        walk(self);
        if let Some(f) = self.frame() {
            f.depth -= 1;
        }
    }

    fn function(
        &mut self,
        kind: FunctionKind,
        sig: &syn::Signature,
        body: Option<&syn::Block>,
        walk: impl FnOnce(&mut Self),
    ) {
        self.stats.functions += 1;
        let is_async = sig.asyncness.is_some();
        let is_unsafe = matches!(sig.safety, syn::Safety::Unsafe(_));
        self.stats.async_functions += u64::from(is_async);
        self.stats.unsafe_functions += u64::from(is_unsafe);
        let mut name = String::new();
        for part in &self.scope {
            name.push_str(part);
            name.push_str("::");
        }
        name.push_str(&sig.ident.to_string());
        self.frames.push(Frame {
            metrics: FunctionMetrics {
                name,
                kind,
                is_async,
                is_unsafe,
                has_body: body.is_some(),
                params: u32::try_from(sig.inputs.len()).unwrap_or(u32::MAX),
                statements: 0,
                complexity: 1,
                max_nesting: 0,
                unsafe_blocks: 0,
            },
            depth: 0,
        });
        // Functions declared inside this one are named from the top of the file again.
        let scope = std::mem::take(&mut self.scope);
        walk(self);
        self.scope = scope;
        let frame = self.frames.pop().expect("pushed above");
        self.functions.push(frame.metrics);
    }

    fn scoped(&mut self, name: String, walk: impl FnOnce(&mut Self)) {
        self.scope.push(name);
        walk(self);
        self.scope.pop();
    }
}

/// The last segment of a type's path (`Vec` for `std::vec::Vec<T>`), or `_`.
fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| "_".to_owned(), |s| s.ident.to_string()),
        syn::Type::Reference(r) => type_name(&r.elem),
        syn::Type::Paren(p) => type_name(&p.elem),
        syn::Type::Group(g) => type_name(&g.elem),
        _ => "_".to_owned(),
    }
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        self.stats.items += 1;
        match item {
            syn::Item::Struct(_) => self.stats.structs += 1,
            syn::Item::Enum(_) => self.stats.enums += 1,
            syn::Item::Trait(t) => {
                self.stats.traits += 1;
                self.unsafe_traits += u64::from(t.unsafety.is_some());
            }
            syn::Item::Impl(i) => {
                self.stats.impls += 1;
                self.stats.unsafe_impls += u64::from(i.unsafety.is_some());
            }
            // A `macro_rules!` definition: its body is a token stream, not macro calls.
            syn::Item::Macro(m) if m.ident.is_some() => {
                self.stats.macro_rules += 1;
                return;
            }
            _ => {}
        }
        visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.scoped(m.ident.to_string(), |w| visit::visit_item_mod(w, m));
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        self.scoped(type_name(&i.self_ty), |w| visit::visit_item_impl(w, i));
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        self.scoped(t.ident.to_string(), |w| visit::visit_item_trait(w, t));
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function(FunctionKind::Free, &f.sig, Some(&f.block), |w| {
            visit::visit_item_fn(w, f);
        });
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.function(FunctionKind::Method, &f.sig, Some(&f.block), |w| {
            visit::visit_impl_item_fn(w, f);
        });
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        self.function(FunctionKind::TraitMethod, &f.sig, f.default.as_ref(), |w| {
            visit::visit_trait_item_fn(w, f);
        });
    }

    fn visit_stmt(&mut self, s: &'ast syn::Stmt) {
        if let Some(f) = self.frame() {
            f.metrics.statements += 1;
        }
        visit::visit_stmt(self, s);
    }

    fn visit_local_init(&mut self, init: &'ast syn::LocalInit) {
        if init.diverge.is_some() {
            self.decision(1);
        }
        visit::visit_local_init(self, init);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.decision(1);
        self.nested(|w| {
            for attr in &e.attrs {
                w.visit_attribute(attr);
            }
            w.visit_expr(&e.cond);
            w.visit_block(&e.then_branch);
        });
        match e.else_branch.as_ref().map(|(_, expr)| &**expr) {
            // `else if`: the same depth as this `if`.
            Some(syn::Expr::If(next)) => self.visit_expr_if(next),
            // `else { .. }`: one level, as the `then` block.
            Some(syn::Expr::Block(block)) => self.nested(|w| w.visit_block(&block.block)),
            Some(other) => self.nested(|w| w.visit_expr(other)),
            None => {}
        }
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.decision(1);
        self.nested(|w| visit::visit_expr_while(w, e));
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.decision(1);
        self.nested(|w| visit::visit_expr_for_loop(w, e));
    }

    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.nested(|w| visit::visit_expr_loop(w, e));
    }

    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.decision(u32::try_from(e.arms.len().saturating_sub(1)).unwrap_or(u32::MAX));
        self.nested(|w| visit::visit_expr_match(w, e));
    }

    fn visit_pat_guard(&mut self, p: &'ast syn::PatGuard) {
        self.decision(1);
        visit::visit_pat_guard(self, p);
    }

    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if matches!(e.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) {
            self.decision(1);
        }
        visit::visit_expr_binary(self, e);
    }

    fn visit_expr_try(&mut self, e: &'ast syn::ExprTry) {
        self.decision(1);
        visit::visit_expr_try(self, e);
    }

    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        self.stats.closures += 1;
        self.nested(|w| visit::visit_expr_closure(w, e));
    }

    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.stats.unsafe_blocks += 1;
        if let Some(f) = self.frame() {
            f.metrics.unsafe_blocks += 1;
        }
        self.nested(|w| visit::visit_expr_unsafe(w, e));
    }

    fn visit_expr_block(&mut self, e: &'ast syn::ExprBlock) {
        self.nested(|w| visit::visit_expr_block(w, e));
    }

    fn visit_expr_async(&mut self, e: &'ast syn::ExprAsync) {
        self.nested(|w| visit::visit_expr_async(w, e));
    }

    fn visit_expr_const(&mut self, e: &'ast syn::ExprConst) {
        self.nested(|w| visit::visit_expr_const(w, e));
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.stats.macro_calls += 1;
        visit::visit_macro(self, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse(text: &str) -> FileAnalysis {
        FileAnalysis::of(&syn::parse_file(text).expect("parses"), text)
    }

    fn function<'a>(analysis: &'a FileAnalysis, name: &str) -> &'a FunctionMetrics {
        analysis
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name} in {:?}", analysis.functions))
    }

    #[test]
    fn a_straight_function_has_complexity_one_and_no_nesting() {
        let a = analyse("fn f(a: u8, b: u8) -> u8 { let c = a + b; c }");
        let f = function(&a, "f");
        assert_eq!(
            (f.complexity, f.max_nesting, f.params, f.statements),
            (1, 0, 2, 2)
        );
        assert_eq!(f.kind, FunctionKind::Free);
        assert!(f.has_body && !f.is_async && !f.is_unsafe);
    }

    #[test]
    fn each_decision_adds_one() {
        let a = analyse(
            "fn f(x: u8, r: Result<u8, ()>) -> Result<u8, ()> {
                 if x > 1 || x == 0 {} else if x == 1 {} else {}
                 while x > 3 {}
                 for _ in 0..x {}
                 match x { 0 => {}, 1 if x > 0 => {}, _ => {} }
                 let Some(y) = Some(x) else { return Err(()) };
                 let _ = r? + y;
                 loop { break }
                 Ok(x)
             }",
        );
        // 1 + if + || + else-if + while + for + 2 arms + guard + let-else + `?` (loop adds none).
        assert_eq!(function(&a, "f").complexity, 11);
    }

    #[test]
    fn an_else_if_chain_stays_at_one_depth_and_closures_nest() {
        let a = analyse(
            "fn f(x: u8) {
                 if x == 0 {} else if x == 1 {} else if x == 2 {} else {}
             }
             fn g(v: Vec<u8>) {
                 v.iter().for_each(|x| { if *x > 0 { unsafe { let _ = 1; } } });
             }",
        );
        assert_eq!(function(&a, "f").max_nesting, 1);
        // closure > block > if > unsafe.
        let g = function(&a, "g");
        assert_eq!((g.max_nesting, g.unsafe_blocks, g.complexity), (4, 1, 2));
        assert_eq!(a.max_nesting, 4);
    }

    #[test]
    fn methods_nested_functions_and_modules_are_named_and_counted_apart() {
        let a = analyse(
            "mod inner {
                 struct S;
                 impl S { fn m(&self) -> bool { fn helper() -> bool { true && false } helper() } }
                 unsafe trait T { fn t(&self); fn d(&self) { if true {} } }
                 impl<'a> T for &'a S { fn t(&self) {} }
             }",
        );
        let names: Vec<_> = a.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "helper",
                "inner::S::m",
                "inner::T::t",
                "inner::T::d",
                "inner::S::t"
            ]
        );
        assert_eq!(function(&a, "helper").complexity, 2);
        assert_eq!(function(&a, "inner::S::m").complexity, 1);
        let declared = function(&a, "inner::T::t");
        assert_eq!(declared.kind, FunctionKind::TraitMethod);
        assert!(!declared.has_body);
        assert_eq!(function(&a, "inner::S::m").kind, FunctionKind::Method);
        assert_eq!(a.debt.unsafe_code, 1);
        assert_eq!(a.stats.functions, 5);
    }

    #[test]
    fn debt_markers_come_from_the_text_and_the_syntax() {
        let text = "// TODO one\n/* FIXME two */\n// TODO three\nunsafe fn f() { unsafe {} }\nunsafe impl Send for X {}";
        let a = analyse(text);
        assert_eq!(
            a.debt,
            DebtMarkers {
                todo: 2,
                fixme: 1,
                unsafe_code: 3
            }
        );
    }

    #[test]
    fn a_file_without_functions_has_zero_maxima() {
        let a = analyse("struct A; const B: u8 = 1;");
        assert!(a.functions.is_empty());
        assert_eq!((a.max_complexity, a.max_nesting), (0, 0));
        assert_eq!(a.stats.items, 2);
    }
}
