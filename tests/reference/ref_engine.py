"""An independent reference for veil's built-in engine, in numpy: its own
GGUF reader, dequantization, a whole-sequence forward pass (no KV cache),
and the BPE / SentencePiece tokenizers written from their definitions
(the pre-tokenizer as Python regular expressions over unicodedata's
categories). Shares no code with the C engine."""
import re
import struct
import sys
import unicodedata

import numpy as np

F32, F16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 6, 8, 12, 13, 14, 30
BLOCK = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34), BF16: (1, 2), Q4_0: (32, 18), Q5_0: (32, 22),
         Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210)}
INT8_ACTIVATIONS = (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)  # the engine's integer kernels take int8 activations


class GGUF:
    def __init__(self, path):
        self.data = data = open(path, "rb").read()
        if data[:4] != b"GGUF":
            raise ValueError("not GGUF")
        self.version, nt, nkv = struct.unpack_from("<IQQ", data, 4)
        self.off = 24
        self.kv = {}
        for _ in range(nkv):
            key = self._str()
            (t,) = self._u("<I")
            self.kv[key] = self._val(t)
        align = self.kv.get("general.alignment", 32)
        infos = []
        for _ in range(nt):
            name = self._str()
            (nd,) = self._u("<I")
            dims = [self._u("<Q")[0] for _ in range(nd)]
            (typ,) = self._u("<I")
            (offset,) = self._u("<Q")
            infos.append((name, dims, typ, offset))
        start = (self.off + align - 1) // align * align
        self.tensors = {}
        self.types = {}
        for name, dims, typ, offset in infos:
            self.types[name] = typ
            n = int(np.prod(dims))
            be, bb = BLOCK[typ]
            raw = data[start + offset:start + offset + n // be * bb]
            self.tensors[name] = dequant(raw, typ, n).reshape(list(reversed(dims)))

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.off)
        self.off += struct.calcsize(fmt)
        return v

    def _str(self):
        (n,) = self._u("<Q")
        s = self.data[self.off:self.off + n].decode("utf-8")
        self.off += n
        return s

    def _val(self, t):
        fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
        if t in fmts:
            return self._u(fmts[t])[0]
        if t == 8:
            return self._str()
        if t == 9:
            (et,) = self._u("<I")
            (n,) = self._u("<Q")
            return [self._val(et) for _ in range(n)]
        raise ValueError(f"value type {t}")


def dequant(raw, typ, n):
    if typ == F32:
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if typ == F16:
        return np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if typ == BF16:
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64)
    if typ == Q8_0:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
        d = b[:, :2].copy().view("<f2").astype(np.float64)
        q = b[:, 2:].copy().view(np.int8).astype(np.float64)
        return (d * q).reshape(-1)
    if typ == Q4_0:  # d, then nibbles: element i low, element i + 16 high; (q - 8) d
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
        d = b[:, :2].copy().view("<f2").astype(np.float64)
        qs = b[:, 2:].astype(np.int64)
        q = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8], axis=1)
        return (d * q).reshape(-1)
    if typ == Q5_0:  # d, 32 fifth bits, nibbles; (q - 16) d
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 22)
        d = b[:, :2].copy().view("<f2").astype(np.float64)
        qh = b[:, 2:6].copy().view("<u4").astype(np.int64)
        qs = b[:, 6:].astype(np.int64)
        j = np.arange(16)
        lo = (qs & 15) | (((qh >> j) & 1) << 4)
        hi = (qs >> 4) | (((qh >> (j + 16)) & 1) << 4)
        return (d * (np.concatenate([lo, hi], axis=1) - 16)).reshape(-1)
    if typ in (Q4_K, Q5_K):  # d, dmin, 12 bytes of 6-bit scales and mins, [32 bytes of fifth bits], nibbles
        size = 144 if typ == Q4_K else 176
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
        d = b[:, 0:2].copy().view("<f2").astype(np.float64)
        dmin = b[:, 2:4].copy().view("<f2").astype(np.float64)
        sc_b = b[:, 4:16].astype(np.int64)
        sc = np.zeros((b.shape[0], 8), np.int64)
        mn = np.zeros((b.shape[0], 8), np.int64)
        for j in range(8):
            if j < 4:
                sc[:, j], mn[:, j] = sc_b[:, j] & 63, sc_b[:, j + 4] & 63
            else:
                sc[:, j] = (sc_b[:, j + 4] & 15) | ((sc_b[:, j - 4] >> 6) << 4)
                mn[:, j] = (sc_b[:, j + 4] >> 4) | ((sc_b[:, j] >> 6) << 4)
        qs = b[:, 16:144].astype(np.int64) if typ == Q4_K else b[:, 48:176].astype(np.int64)
        qh = b[:, 16:48].astype(np.int64) if typ == Q5_K else None
        out = []
        for j in range(8):  # sub-block j: nibbles of bytes 32 (j // 2)…, low for even j, high for odd
            nib = qs[:, 32 * (j // 2):32 * (j // 2) + 32]
            q = (nib & 15) if j % 2 == 0 else (nib >> 4)
            if qh is not None:
                q = q + ((qh >> j) & 1) * 16
            out.append(d * sc[:, j:j + 1] * q - dmin * mn[:, j:j + 1])
        return np.concatenate(out, axis=1).reshape(-1)
    if typ == Q6_K:  # 128 low-nibble bytes, 64 bytes of 2-bit highs, 16 int8 scales, d
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 210)
        ql, qh = b[:, :128].astype(np.int64), b[:, 128:192].astype(np.int64)
        sc = b[:, 192:208].copy().view(np.int8).astype(np.float64)
        d = b[:, 208:210].copy().view("<f2").astype(np.float64)
        out = np.zeros((b.shape[0], 256))
        for h in range(2):
            L, H = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            for k, (lo_src, shift_l, shift_h) in enumerate([(0, 0, 0), (32, 0, 2), (0, 4, 4), (32, 4, 6)]):
                q = ((L[:, lo_src:lo_src + 32] >> shift_l) & 15) | (((H >> shift_h) & 3) << 4)
                for l in range(32):
                    e = 128 * h + 32 * k + l
                    out[:, e] = d[:, 0] * sc[:, e // 16] * (q[:, l] - 32)
        return out.reshape(-1)
    raise ValueError(f"tensor type {typ}")


class Model:
    def __init__(self, path):
        g = self.g = GGUF(path)
        kv, t = g.kv, g.tensors
        a = self.arch = {"mistral": "llama"}.get(kv["general.architecture"], kv["general.architecture"])
        self.dim = kv[f"{a}.embedding_length"]
        self.layers = kv[f"{a}.block_count"]
        self.heads = kv[f"{a}.attention.head_count"]
        self.kv_heads = kv.get(f"{a}.attention.head_count_kv", self.heads)
        self.hd = kv.get(f"{a}.attention.key_length", self.dim // self.heads)
        self.eps = kv.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
        self.base = kv.get(f"{a}.rope.freq_base", 10000.0)
        self.scale = kv.get(f"{a}.rope.scaling.factor", 1.0) if kv.get(f"{a}.rope.scaling.type", "none") == "linear" else 1.0
        self.neox = a != "llama"
        self.t = t
        self.out_name = "output.weight" if "output.weight" in t else "token_embd.weight"
        self.out = t[self.out_name]

    def mm(self, h, name):
        """h @ W.T; for block-quantized weights the activations are first quantized as
        the engine's integer kernels take them: blocks of 32, scale amax/127,
        values rounded to nearest (ties to even)."""
        if self.g.types[name] in INT8_ACTIVATIONS:
            b = h.reshape(-1, h.shape[-1] // 32, 32).astype(np.float32)
            d = (np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
            inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, 1), 0).astype(np.float32)
            q = np.rint(b * inv)
            h = (q * d).astype(np.float64).reshape(h.shape)
        return h @ self.t[name].T

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x: (T, H, hd)
        hd = self.hd
        inv = self.base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = (pos / self.scale)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.neox:
            x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
            return np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x1 * c - x2 * s, x1 * s + x2 * c
        return out

    def logits(self, tokens):
        t, T = self.t, len(tokens)
        x = t["token_embd.weight"][np.array(tokens)]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        grp = self.heads // self.kv_heads
        for l in range(self.layers):
            p = f"blk.{l}."
            h = self.rms(x, t[p + "attn_norm.weight"])
            q = self.mm(h, p + "attn_q.weight") + t.get(p + "attn_q.bias", 0)
            k = self.mm(h, p + "attn_k.weight") + t.get(p + "attn_k.bias", 0)
            v = self.mm(h, p + "attn_v.weight") + t.get(p + "attn_v.bias", 0)
            q = q.reshape(T, self.heads, self.hd)
            k = k.reshape(T, self.kv_heads, self.hd)
            v = v.reshape(T, self.kv_heads, self.hd)
            if p + "attn_q_norm.weight" in t:
                q = self.rms(q, t[p + "attn_q_norm.weight"])
                k = self.rms(k, t[p + "attn_k_norm.weight"])
            q, k = self.rope(q, pos), self.rope(k, pos)
            o = np.empty((T, self.heads, self.hd))
            for hh in range(self.heads):
                s = q[:, hh] @ k[:, hh // grp].T / np.sqrt(self.hd) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                o[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ v[:, hh // grp]
            x = x + self.mm(o.reshape(T, -1), p + "attn_output.weight")
            h = self.rms(x, t[p + "ffn_norm.weight"])
            gt = self.mm(h, p + "ffn_gate.weight")
            x = x + self.mm((gt / (1 + np.exp(-gt))) * self.mm(h, p + "ffn_up.weight"), p + "ffn_down.weight")
        return self.mm(self.rms(x, t["output_norm.weight"]), self.out_name)


# ---- tokenizers ----

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _class(pred):
    out, start = [], None
    for c in range(0x110000):
        if pred(c):
            if start is None:
                start = c
        elif start is not None:
            out.append((start, c - 1))
            start = None
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in out)


_classes = {}


def classes():
    if not _classes:
        _classes["L"] = _class(lambda c: unicodedata.category(chr(c))[0] == "L")
        _classes["N"] = _class(lambda c: unicodedata.category(chr(c))[0] == "N")
        _classes["S"] = "\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # White_Space
    return _classes


def pretokenizer(pre):
    c = classes()
    L, N, S = c["L"], c["N"], c["S"]
    contr = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    if pre in ("llama-bpe", "qwen2"):
        digits = "{1,3}" if pre == "llama-bpe" else ""
        pat = (f"(?:{contr})|[^\r\n{L}{N}]?[{L}]+|[{N}]{digits}| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+"
               f"|[{S}]+(?![^{S}])|[{S}]+")
    else:
        pat = (f"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+")
    return re.compile(pat)


class Tokenizer:
    def __init__(self, g):
        kv = g.kv
        self.kind = kv["tokenizer.ggml.model"]
        self.tokens = kv["tokenizer.ggml.tokens"]
        self.types = kv.get("tokenizer.ggml.token_type", [1] * len(self.tokens))
        self.scores = kv.get("tokenizer.ggml.scores", [0.0] * len(self.tokens))
        self.ids = {}
        for i, s in enumerate(self.tokens):
            self.ids.setdefault(s, i)
        if self.kind == "gpt2":
            self.ranks = {}
            for r, m in enumerate(kv.get("tokenizer.ggml.merges", [])):
                a, b = m.split(" ", 1)
                self.ranks.setdefault((a, b), r)
            self.b2u = bytes_to_unicode()
            self.u2b = {v: k for k, v in self.b2u.items()}
            self.re = pretokenizer(kv.get("tokenizer.ggml.pre", "default"))

    def encode(self, text):
        if self.kind == "gpt2":
            out = []
            for piece in self.re.findall(text):
                word = [self.b2u[b] for b in piece.encode("utf-8")]
                while len(word) > 1:
                    pairs = [(self.ranks.get((word[i], word[i + 1]), None), i) for i in range(len(word) - 1)]
                    pairs = [p for p in pairs if p[0] is not None]
                    if not pairs:
                        break
                    best = min(pairs)[0]
                    a, b = word[min(pairs)[1]], word[min(pairs)[1] + 1]
                    merged, i = [], 0
                    while i < len(word):
                        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                            merged.append(a + b)
                            i += 2
                        else:
                            merged.append(word[i])
                            i += 1
                    word = merged
                    del best
                out += [self.ids[w] for w in word if w in self.ids]
            return out
        # SentencePiece-style: spaces as U+2581 with one in front, merge the
        # best-scoring adjacent pair (leftmost on ties), bytes for the rest
        text = "\u2581" + text.replace(" ", "\u2581") if text else ""
        syms = list(text)
        while True:
            best = None
            for i in range(len(syms) - 1):
                cat = syms[i] + syms[i + 1]
                if cat in self.ids:
                    sc = self.scores[self.ids[cat]]
                    if best is None or sc > best[0]:
                        best = (sc, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        out = []
        for s in syms:
            if s in self.ids:
                out.append(self.ids[s])
            else:
                out += [self.ids["<0x%02X>" % b] for b in s.encode("utf-8")]
        return out

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            s, t = self.tokens[i], self.types[i]
            if t in (2, 3, 5):
                continue
            if t == 4:
                out += s.encode("utf-8")
            elif self.kind == "gpt2":
                out += bytes(self.u2b[ch] for ch in s) if all(ch in self.u2b for ch in s) else s.encode("utf-8")
            elif t == 6:
                out.append(int(s[3:5], 16))
            else:
                out += s.replace("\u2581", " ").encode("utf-8")
        return bytes(out)


if __name__ == "__main__":
    m = Model(sys.argv[1])
    print(m.logits([int(x) for x in sys.argv[2].split(",")])[-1][:8])
