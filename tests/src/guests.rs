//! Small guest modules with `scorer.wasm`'s exports that misbehave on purpose, for the tests of
//! the host's fallbacks (WAT text; the tests compile it with the `wat` crate).

/// A module with scorer.wasm's exports whose `tg_score` loops forever on a request starting with
/// a space (JSON), traps on `#` or on 0x91 (a MessagePack array of one), and otherwise answers a fixed JSON response.
pub const MISBEHAVING: &str = r#"
(module
  (memory (export "memory") 2)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{\"ok\":true,\"fake\":1}")
  (func (export "tg_version") (result i32) (i32.const 0x10000))
  (func (export "tg_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.and (i32.add (i32.add (global.get $next) (local.get $len)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))
  (func (export "tg_free") (param i32 i32))
  (func (export "tg_set_edge_keys") (param i32 i32) (result i32) (i32.const 0))
  (func (export "tg_load_snapshot") (param i32 i32) (result i32) (i32.const 0))
  (func (export "tg_last_error") (result i64) (i64.const 0))
  (func (export "tg_set_reasons") (param i32))
  (func $score (export "tg_score") (param $p i32) (param $n i32) (result i64)
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 32))
      (then (loop $forever (br $forever))))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 35))
      (then unreachable))
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 0x91))
      (then unreachable))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 20)))
  (func (export "tg_score_batch") (param i32 i32) (result i64)
    (call $score (local.get 0) (local.get 1))))
"#;
