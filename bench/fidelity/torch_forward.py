#!/usr/bin/env python3
"""A hand-written PyTorch forward of the LLaMA2-7B shape (synthetic bf16
weights), timed at the shapes bench_cluster_model times, for the issue's
speed comparison of the cuda executor:

  RMSNorm, fused QKV GEMM, rotary embedding, SDPA (causal for prefill; over
  a contiguous KV cache for decode), O projection, SwiGLU MLP with a fused
  gate/up GEMM, final norm and LM head on each sequence's last token.
  Prefill runs eager; decode is captured as a CUDA graph and replayed.

One forward's time is the mean of 20 (decode) or 10 (prefill) after 3
warm-ups, with a device sync after each (as the executor waits for each
batch). CSV on stdout: kind,batch,context,tokens,ms,graphs.

  python3 torch_forward.py [--layers N] [--eager-decode]
(--eager-decode also times decode launched op by op, graphs = 0.)
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

HIDDEN, HEADS, HEAD_DIM, INTER, VOCAB = 4096, 32, 128, 11008, 32000


def rms_norm(x, w, eps=1e-5):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, pos, theta=10000.0):
    # x: [..., tokens, heads, 128]; rotate-half pairing (Hugging Face LLaMA).
    inv = theta ** (-torch.arange(0, HEAD_DIM, 2, device=x.device, dtype=torch.float32) / HEAD_DIM)
    ang = pos.float()[..., None] * inv  # [..., tokens, 64]
    cos, sin = ang.cos()[..., None, :], ang.sin()[..., None, :]
    x1, x2 = x[..., : HEAD_DIM // 2].float(), x[..., HEAD_DIM // 2 :].float()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).to(x.dtype)


class Model:
    def __init__(self, layers, dev):
        g = torch.Generator(device=dev).manual_seed(1)

        def w(n, k):
            a = math.sqrt(3.0 / k)
            return (torch.rand(n, k, device=dev, generator=g, dtype=torch.bfloat16) * 2 - 1) * a

        self.layers = [
            dict(
                qkv=w(3 * HIDDEN, HIDDEN),
                o=w(HIDDEN, HIDDEN),
                gu=w(2 * INTER, HIDDEN),
                down=w(HIDDEN, INTER),
                n1=torch.ones(HIDDEN, device=dev, dtype=torch.bfloat16),
                n2=torch.ones(HIDDEN, device=dev, dtype=torch.bfloat16),
            )
            for _ in range(layers)
        ]
        self.embed = w(VOCAB, HIDDEN)
        self.final = torch.ones(HIDDEN, device=dev, dtype=torch.bfloat16)
        self.head = w(VOCAB, HIDDEN)

    def mlp(self, L, x):
        h = rms_norm(x, L["n2"])
        gu = F.linear(h, L["gu"])
        gate, up = gu.split(INTER, -1)
        return x + F.linear(F.silu(gate) * up, L["down"])

    def prefill(self, tokens):  # tokens: [n]
        x = self.embed[tokens][None]  # [1, n, H]
        n = tokens.shape[0]
        pos = torch.arange(n, device=tokens.device)
        for L in self.layers:
            qkv = F.linear(rms_norm(x, L["n1"]), L["qkv"]).view(1, n, 3, HEADS, HEAD_DIM)
            q, k, v = rope(qkv[:, :, 0], pos), rope(qkv[:, :, 1], pos), qkv[:, :, 2]
            a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            x = x + F.linear(a.transpose(1, 2).reshape(1, n, HIDDEN), L["o"])
            x = self.mlp(L, x)
        return F.linear(rms_norm(x[:, -1], self.final), self.head)

    def decode(self, tokens, pos, caches):  # tokens [b], pos [b] (all equal here), caches: per layer (k, v) [b, h, ctx+1, d]
        x = self.embed[tokens][:, None]  # [b, 1, H]
        b = tokens.shape[0]
        for L, (kc, vc) in zip(self.layers, caches):
            qkv = F.linear(rms_norm(x, L["n1"]), L["qkv"]).view(b, 1, 3, HEADS, HEAD_DIM)
            q, k, v = rope(qkv[:, :, 0], pos[:, None]), rope(qkv[:, :, 1], pos[:, None]), qkv[:, :, 2]
            kc[:, :, -1:] = k.transpose(1, 2)
            vc[:, :, -1:] = v.transpose(1, 2)
            a = F.scaled_dot_product_attention(q.transpose(1, 2), kc, vc)
            x = x + F.linear(a.transpose(1, 2).reshape(b, 1, HIDDEN), L["o"])
            x = self.mlp(L, x)
        return F.linear(rms_norm(x[:, -1], self.final), self.head)


def timed(fn, reps):
    for _ in range(3):
        fn()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--eager-decode", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
    m = Model(args.layers, dev)
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, llama2-7b shape with {args.layers} layers")
    print("kind,batch,context,tokens,ms,graphs")
    max_kv_tokens = 196608  # bench_cluster_model's bound: 96 GiB of KV at 32 layers
    with torch.inference_mode():
        for b in (1, 8, 32, 64, 128, 256):
            for c in (512, 2048, 8192, 32768):
                if b * (c + 16) > max_kv_tokens:
                    continue
                caches = [
                    (
                        torch.zeros(b, HEADS, c + 1, HEAD_DIM, device=dev, dtype=torch.bfloat16),
                        torch.zeros(b, HEADS, c + 1, HEAD_DIM, device=dev, dtype=torch.bfloat16),
                    )
                    for _ in m.layers
                ]
                tok = torch.ones(b, dtype=torch.long, device=dev)
                pos = torch.full((b,), c, dtype=torch.long, device=dev)
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        m.decode(tok, pos, caches)
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    m.decode(tok, pos, caches)
                ms = timed(graph.replay, 20)
                print(f"decode,{b},{c},{b},{ms:.4f},1", flush=True)
                if args.eager_decode:
                    ms = timed(lambda: m.decode(tok, pos, caches), 20)
                    print(f"decode,{b},{c},{b},{ms:.4f},0", flush=True)
                del caches, graph
                torch.cuda.empty_cache()
        for n in (128, 512, 2048, 8192, 16384):
            tok = torch.randint(0, VOCAB, (n,), device=dev)
            ms = timed(lambda: m.prefill(tok), 10)
            print(f"prefill,1,0,{n},{ms:.4f},0", flush=True)


if __name__ == "__main__":
    main()
