// ggml's block-quantised weights, read in place: `w` holds a part's GGUF bytes as u32 words
// (little-endian). Blocks of 32 elements (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), each an f16 scale
// d (and for Q4_1/Q5_1 an f16 minimum m) before its quants, or super-blocks of 256 (the K types,
// IQ4_XS) with 16 or 32 element groups; element i is element i % size of block i / size; in the
// 4-bit types of 32 byte j holds element j (low nibble) and j + 16 (high nibble). The host appends
// `fn weight` and `fn weight4` calling one of these. Values are computed as core's `decode_block`
// computes them (group scale times the quant, plus the group offset), so they equal the CPU's
// bit for bit. Q8_0's, Q4_0's and Q4_1's `*_4(i)` read elements i..i+4 (i a multiple of 4, so all
// in one block) with one scale and one word of quants; for the others the host's `weight4` reads
// four elements one by one.

fn w_byte(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// The f16 at an even byte offset (every scale and minimum is at one).
fn w_half(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u])[(b >> 1u) & 1u];
}

// The 4 bytes at byte offset b (any alignment) as one little-endian word. A part's bytes are
// padded to whole words, so the second word read exists whenever b is unaligned.
fn w_word(b: u32) -> u32 {
    let s = (b & 3u) * 8u;
    let lo = w[b >> 2u];
    if (s == 0u) {
        return lo;
    }
    return (lo >> s) | (w[(b >> 2u) + 1u] << (32u - s));
}

// The low (or high) nibbles of a word's 4 bytes.
fn w_nibbles4(word: u32, high: bool) -> vec4<f32> {
    let v = select(word, word >> 4u, high);
    return vec4<f32>(f32(v & 15u), f32((v >> 8u) & 15u), f32((v >> 16u) & 15u), f32((v >> 24u) & 15u));
}

fn w_nibble(quants: u32, j: u32) -> u32 {
    let q = w_byte(quants + (j & 15u));
    return select(q >> 4u, q & 15u, j < 16u);
}

fn q8_0(i: u32) -> f32 {
    let b = (i / 32u) * 34u;
    let q = bitcast<i32>(w_byte(b + 2u + i % 32u) << 24u) >> 24u;
    return f32(q) * w_half(b);
}

fn q4_0(i: u32) -> f32 {
    let b = (i / 32u) * 18u;
    return w_half(b) * f32(i32(w_nibble(b + 2u, i % 32u)) - 8);
}

fn q4_1(i: u32) -> f32 {
    let b = (i / 32u) * 20u;
    return w_half(b) * f32(w_nibble(b + 4u, i % 32u)) + w_half(b + 2u);
}

fn q8_0_4(i: u32) -> vec4<f32> {
    let b = (i / 32u) * 34u;
    let q = w_word(b + 2u + i % 32u);
    let s = vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u);
    return vec4<f32>(s) * w_half(b);
}

fn q4_0_4(i: u32) -> vec4<f32> {
    let b = (i / 32u) * 18u;
    let j = i % 32u;
    return w_half(b) * (w_nibbles4(w_word(b + 2u + (j & 15u)), j >= 16u) - vec4<f32>(8.0));
}

fn q4_1_4(i: u32) -> vec4<f32> {
    let b = (i / 32u) * 20u;
    let j = i % 32u;
    let dm = unpack2x16float(w[b >> 2u]);
    return dm.x * w_nibbles4(w[(b + 4u + (j & 15u)) >> 2u], j >= 16u) + vec4<f32>(dm.y);
}

// IQ4_NL's and IQ4_XS's 16 levels, indexed by a nibble.
fn iq4_level(n: u32) -> f32 {
    var levels = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
    return levels[n & 15u];
}

// The signed byte at byte offset b.
fn w_i8(b: u32) -> i32 {
    return bitcast<i32>(w_byte(b) << 24u) >> 24u;
}

fn q5_0(i: u32) -> f32 {
    let b = (i / 32u) * 22u;
    let j = i % 32u;
    let high = (w_word(b + 2u) >> j) & 1u;
    return w_half(b) * f32(i32(w_nibble(b + 6u, j) | (high << 4u)) - 16);
}

fn q5_1(i: u32) -> f32 {
    let b = (i / 32u) * 24u;
    let j = i % 32u;
    let high = (w_word(b + 4u) >> j) & 1u;
    return w_half(b) * f32(w_nibble(b + 8u, j) | (high << 4u)) + w_half(b + 2u);
}

fn iq4_nl(i: u32) -> f32 {
    let b = (i / 32u) * 18u;
    return w_half(b) * iq4_level(w_nibble(b + 2u, i % 32u));
}

// Q2_K (84 bytes): 16 scale/minimum nibbles, 64 bytes of 2-bit quants, d, dmin.
fn q2_k(i: u32) -> f32 {
    let b = (i / 256u) * 84u;
    let e = i % 256u;
    let sm = w_byte(b + e / 16u);
    let q = (w_byte(b + 16u + (e / 128u) * 32u + e % 32u) >> (2u * ((e % 128u) / 32u))) & 3u;
    return (w_half(b + 80u) * f32(sm & 15u)) * f32(q) - w_half(b + 82u) * f32(sm >> 4u);
}

// Q3_K (110 bytes): 32 bytes of high-bit masks, 64 of 2-bit quants, 12 of 6-bit scales, d.
fn q3_k(i: u32) -> f32 {
    let b = (i / 256u) * 110u;
    let e = i % 256u;
    let g = e / 16u;
    let low = (w_byte(b + 96u + g % 8u) >> (4u * (g / 8u))) & 15u;
    let high = (w_byte(b + 104u + g % 4u) >> (2u * (g / 4u))) & 3u;
    let scale = w_half(b + 108u) * f32(i32(low | (high << 4u)) - 32);
    let q = (w_byte(b + 32u + (e / 128u) * 32u + e % 32u) >> (2u * ((e % 128u) / 32u))) & 3u;
    let hbit = (w_byte(b + e % 32u) >> (e / 32u)) & 1u;
    return scale * f32(i32(q) - select(0, 4, hbit == 0u));
}

// Q4_K's and Q5_K's 6-bit scale and minimum of group g, from the 12 bytes at offset s.
fn k_scale_min(s: u32, g: u32) -> vec2<f32> {
    if (g < 4u) {
        return vec2<f32>(f32(w_byte(s + g) & 63u), f32(w_byte(s + g + 4u) & 63u));
    }
    let sc = (w_byte(s + g + 4u) & 15u) | ((w_byte(s + g - 4u) >> 6u) << 4u);
    let m = (w_byte(s + g + 4u) >> 4u) | ((w_byte(s + g) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Q4_K (144 bytes): d, dmin, 12 bytes of scales and minimums, 128 of nibbles.
fn q4_k(i: u32) -> f32 {
    let b = (i / 256u) * 144u;
    let e = i % 256u;
    let sm = k_scale_min(b + 4u, e / 32u);
    let q = (w_byte(b + 16u + (e / 64u) * 32u + e % 32u) >> (4u * ((e % 64u) / 32u))) & 15u;
    return (w_half(b) * sm.x) * f32(q) - w_half(b + 2u) * sm.y;
}

// Q5_K (176 bytes): as Q4_K, with 32 bytes of fifth bits before the nibbles.
fn q5_k(i: u32) -> f32 {
    let b = (i / 256u) * 176u;
    let e = i % 256u;
    let sm = k_scale_min(b + 4u, e / 32u);
    let low = (w_byte(b + 48u + (e / 64u) * 32u + e % 32u) >> (4u * ((e % 64u) / 32u))) & 15u;
    let fifth = (w_byte(b + 16u + e % 32u) >> (e / 32u)) & 1u;
    return (w_half(b) * sm.x) * f32(low | (fifth << 4u)) - w_half(b + 2u) * sm.y;
}

// Q6_K (210 bytes): 128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales, d.
fn q6_k(i: u32) -> f32 {
    let b = (i / 256u) * 210u;
    let e = i % 256u;
    let h = e / 128u;
    let low = (w_byte(b + h * 64u + e % 64u) >> (4u * ((e % 128u) / 64u))) & 15u;
    let high = (w_byte(b + 128u + h * 32u + e % 32u) >> (2u * ((e % 128u) / 32u))) & 3u;
    return (w_half(b + 208u) * f32(w_i8(b + 192u + e / 16u))) * f32(i32(low | (high << 4u)) - 32);
}

// IQ4_XS (136 bytes): d, 16 bits of high scale pairs, 4 bytes of low scale nibbles, 128 of nibbles.
fn iq4_xs(i: u32) -> f32 {
    let b = (i / 256u) * 136u;
    let e = i % 256u;
    let g = e / 32u;
    let j = e % 32u;
    let high_bits = w_byte(b + 2u) | (w_byte(b + 3u) << 8u);
    let l = (w_byte(b + 4u + g / 2u) >> (4u * (g % 2u))) & 15u;
    let hi = (high_bits >> (2u * g)) & 3u;
    let scale = w_half(b) * f32(i32(l | (hi << 4u)) - 32);
    return scale * iq4_level((w_byte(b + 8u + g * 16u + j % 16u) >> (4u * (j / 16u))) & 15u);
}
