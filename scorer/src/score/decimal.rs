//! Decimal text to f64, correctly rounded (to nearest, ties to even), in about two kilobytes of
//! wasm: an exact fast path for short numbers (`12.5`, `1533956400`) and a big-integer path for
//! the rest. It replaces `str::parse::<f64>`, whose tables cost ~18 KiB in `scorer.wasm`; tests
//! check it against the standard library's parser.

/// Significant digits kept; beyond 767 no digit changes the rounding but for being non-zero.
const MAX_DIGITS: usize = 800;
/// 32-bit limbs of the big integers: 4096 bits, room for 10^1124 shifted left by 64.
const LIMBS: usize = 128;

/// 10^0 ..= 10^22: every one exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// The value of a JSON number literal (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, checked
/// by the caller); too large gives an infinity.
pub(crate) fn parse(lit: &[u8]) -> f64 {
    let (neg, rest) = match lit.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, lit),
    };
    let sign = |v: f64| if neg { -v } else { v };
    let mut digits = [0u8; MAX_DIGITS];
    let (mut n, mut exp10, mut sticky, mut point) = (0usize, 0i64, false, false);
    let mut i = 0;
    while let Some(&c) = rest.get(i) {
        match c {
            b'.' => point = true,
            b'0'..=b'9' => {
                if n == 0 && c == b'0' {
                    exp10 -= i64::from(point);
                } else if n < MAX_DIGITS {
                    digits[n] = c - b'0';
                    n += 1;
                    exp10 -= i64::from(point);
                } else {
                    sticky |= c != b'0';
                    exp10 += i64::from(!point);
                }
            }
            _ => break,
        }
        i += 1;
    }
    if i < rest.len() {
        let (eneg, from) = match rest.get(i + 1) {
            Some(b'-') => (true, i + 2),
            Some(b'+') => (false, i + 2),
            _ => (false, i + 1),
        };
        let e = rest
            .get(from..)
            .unwrap_or_default()
            .iter()
            .fold(0i64, |e, &c| (e * 10 + i64::from(c.wrapping_sub(b'0'))).min(1_000_000));
        exp10 += if eneg { -e } else { e };
    }
    while n > 0 && digits[n - 1] == 0 {
        n -= 1;
        exp10 += 1;
    }
    if n == 0 {
        return sign(0.0);
    }
    // The value lies in [10^(magnitude - 1), 10^magnitude).
    let magnitude = exp10 + n as i64;
    if magnitude > 309 {
        return sign(f64::INFINITY);
    }
    if magnitude < -323 {
        return sign(0.0);
    }
    if !sticky && n <= 15 && (-22..=22).contains(&exp10) {
        // Both operands are exact, so one IEEE operation rounds correctly.
        let m = digits[..n].iter().fold(0u64, |m, &d| m * 10 + u64::from(d)) as f64;
        let p = POW10[exp10.unsigned_abs() as usize];
        return sign(if exp10 >= 0 { m * p } else { m / p });
    }
    let mut d = Big::from_digits(&digits[..n]);
    let (hi, exp2, lost) = if exp10 >= 0 {
        d.mul_pow10(exp10 as u32);
        d.top64()
    } else {
        let mut b = Big::from_digits(&[1]);
        b.mul_pow10(exp10.unsigned_abs() as u32);
        // Scale so that the quotient has 63 or 64 bits.
        let s = 63 + b.bits() as i64 - d.bits() as i64;
        if s >= 0 {
            d.shl(s as u32);
        } else {
            b.shl(s.unsigned_abs() as u32);
        }
        let (q, rem) = d.div_into_u64(&mut b);
        (q, -s, rem)
    };
    sign(round(hi, exp2, sticky || lost))
}

/// The f64 nearest to `hi * 2^exp2` (plus a positive amount below its last bit when `sticky`).
fn round(hi: u64, exp2: i64, sticky: bool) -> f64 {
    if hi == 0 {
        return 0.0;
    }
    let lz = hi.leading_zeros();
    let hi = hi << lz;
    let mut e = exp2 - i64::from(lz) + 63; // exponent of the leading bit
    let shift = if e >= -1022 { 11 } else { 11 + (-1022 - e) };
    if shift > 64 {
        return 0.0; // below half the smallest subnormal
    }
    let shift = shift as u32;
    let (keep, rem) = if shift == 64 { (0, hi) } else { (hi >> shift, hi & ((1u64 << shift) - 1)) };
    let half = 1u64 << (shift - 1);
    let up = rem > half || (rem == half && (sticky || keep & 1 == 1));
    let mut m = keep + u64::from(up);
    if shift > 11 {
        // Subnormal; rounding up to 2^52 gives the smallest normal's bits, as it should.
        return f64::from_bits(m);
    }
    if m == 1 << 53 {
        m >>= 1;
        e += 1;
    }
    if e > 1023 {
        return f64::INFINITY;
    }
    f64::from_bits(((e + 1023) as u64) << 52 | (m & ((1 << 52) - 1)))
}

/// A non-negative big integer, little-endian 32-bit limbs.
struct Big {
    limbs: [u32; LIMBS],
    len: usize,
}

impl Big {
    fn from_digits(digits: &[u8]) -> Big {
        let mut b = Big { limbs: [0; LIMBS], len: 0 };
        for chunk in digits.chunks(9) {
            let v = chunk.iter().fold(0u32, |v, &d| v * 10 + u32::from(d));
            b.mul_add(10u32.pow(chunk.len() as u32), v);
        }
        b
    }

    /// `self = self * m + a`.
    fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.limbs[..self.len] {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0
            && let Some(limb) = self.limbs.get_mut(self.len)
        {
            *limb = carry as u32;
            self.len += 1;
        }
    }

    fn mul_pow10(&mut self, mut e: u32) {
        while e > 0 {
            let step = e.min(9);
            self.mul_add(10u32.pow(step), 0);
            e -= step;
        }
    }

    fn bits(&self) -> u32 {
        match self.len {
            0 => 0,
            n => 32 * n as u32 - self.limbs[n - 1].leading_zeros(),
        }
    }

    fn shl(&mut self, s: u32) {
        let (words, bits) = ((s / 32) as usize, s % 32);
        let new_len = (self.len + words + 1).min(LIMBS);
        for i in (0..new_len).rev() {
            let lo = i.checked_sub(words).and_then(|j| self.limbs.get(j).filter(|_| j < self.len)).copied();
            let below = i.checked_sub(words + 1).and_then(|j| self.limbs.get(j)).copied().unwrap_or(0);
            let lo = lo.unwrap_or(0);
            self.limbs[i] = if bits == 0 { lo } else { lo << bits | below >> (32 - bits) };
        }
        self.len = new_len;
        self.trim();
    }

    fn shr1(&mut self) {
        for i in 0..self.len {
            let above = self.limbs.get(i + 1).copied().unwrap_or(0);
            self.limbs[i] = self.limbs[i] >> 1 | above << 31;
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.len > 0 && self.limbs[self.len - 1] == 0 {
            self.len -= 1;
        }
    }

    fn ge(&self, other: &Big) -> bool {
        if self.len != other.len {
            return self.len > other.len;
        }
        for i in (0..self.len).rev() {
            if self.limbs[i] != other.limbs[i] {
                return self.limbs[i] > other.limbs[i];
            }
        }
        true
    }

    fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.len {
            let v = i64::from(self.limbs[i]) - i64::from(other.limbs.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(v < 0);
            self.limbs[i] = v.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }

    /// `self / divisor` when the quotient is below 2^64, and whether a remainder is left; uses
    /// `divisor` as scratch.
    fn div_into_u64(&mut self, divisor: &mut Big) -> (u64, bool) {
        divisor.shl(63);
        let mut q = 0u64;
        for bit in (0..64).rev() {
            if self.ge(divisor) {
                self.sub(divisor);
                q |= 1 << bit;
            }
            divisor.shr1();
        }
        (q, self.len != 0)
    }

    /// The top 64 bits, the power of two they are scaled by, and whether lower bits were non-zero.
    fn top64(&self) -> (u64, i64, bool) {
        let bits = self.bits();
        let word = |i: usize| u64::from(self.limbs.get(i).copied().unwrap_or(0));
        if bits <= 64 {
            return (word(0) | word(1) << 32, 0, false);
        }
        let shift = bits - 64;
        let bit = |k: u32| (word((k / 32) as usize) >> (k % 32)) & 1;
        let hi = (0..64).fold(0u64, |acc, k| acc | bit(shift + k) << k);
        let lost = (0..shift).any(|k| bit(k) != 0);
        (hi, i64::from(shift), lost)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use alloc::format;
    use alloc::string::String;
    use proptest::prelude::*;

    fn check(text: &str) {
        let expected: f64 = text.parse().unwrap();
        assert_eq!(parse(text.as_bytes()).to_bits(), expected.to_bits(), "{text}");
    }

    #[test]
    fn agrees_with_the_standard_parser_at_the_edges() {
        for text in [
            "0",
            "-0",
            "0.0",
            "1",
            "12.5",
            "1533956400",
            "0.1",
            "0.30000000000000004",
            "123456789012345678901234567890",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "5e-324",
            "1e-400",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1e309",
            "9007199254740993",
            "9007199254740992.5",
            "9007199254740993.0000000000000000000000000000000000001",
            "1e23",
            "8.98846567431158e307",
            "0.000000000000000000000000000000000000000000001",
            "1e-7",
            "123.456e-5",
            "7e22",
            "7e-22",
            "1797693134862315708145274237317043567981e269",
            "2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125e-324",
        ] {
            check(text);
        }
        let long = format!("0.{}", "1".repeat(2000));
        check(&long);
        let long = format!("{}e-1990", "9".repeat(2000));
        check(&long);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        #[test]
        fn every_shortest_or_long_print_of_a_double_reads_back(bits in any::<u64>(), precision in 0usize..25) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            check(&format!("{v:?}"));
            check(&format!("{v:e}"));
            check(&format!("{v:.precision$e}"));
        }

        #[test]
        fn random_decimals_agree(mantissa in "[1-9][0-9]{0,40}", frac in "[0-9]{0,30}", exp in -380i32..330) {
            let text: String = if frac.is_empty() { format!("{mantissa}e{exp}") } else { format!("{mantissa}.{frac}e{exp}") };
            check(&text);
        }
    }
}
