// ggml's block-quantised weights, read in place: `w` holds a part's GGUF bytes as u32 words
// (little-endian). Blocks of 32 elements, each an f16 scale d (and for Q4_1 an f16 minimum m)
// before its quants; element i is element i % 32 of block i / 32; in the 4-bit types byte j holds
// element j (low nibble) and j + 16 (high nibble). The host appends `fn weight` and `fn weight4`
// calling one of these. Values are the scale times the quant, plus Q4_1's minimum, as the CPU
// backend computes. `*_4(i)` reads elements i..i+4 (i a multiple of 4, so all in one block) with
// one scale and one word of quants.

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
