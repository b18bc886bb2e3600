"""Conformer stack with key-padding masks (encoder h_v and the mel decoder).

A block is the usual macaron layout of Gulati et al. (2020): half-step
feed-forward, multi-head self-attention, convolution module, half-step
feed-forward, final LayerNorm. Two deliberate choices (ours):

* absolute sinusoidal positions are added once at the input of the stack
  (relative attention buys little at GRID's 3 s utterances);
* the convolution module normalises with LayerNorm, not BatchNorm, and zeroes
  padded frames before its depthwise convolution, so a padded utterance gives the
  same outputs on its valid frames as the same utterance alone, in training and
  in eval mode.

Streaming (``causal=True``, the model's streaming mode): the depthwise convolutions are
causal (frame t sees t - k + 1 .. t), the input positions are left out (absolute positions
would grow past anything seen in training on a live stream); instead each attention head
learns a bias per relative distance (key - query, clipped to +-``REL_DISTANCE`` frames, as
T5's relative positions without the log buckets), which a stream of any length can use. And
:meth:`Conformer.forward` takes a chunk size: frames attend within their chunk
and to ``left`` frames before it, and the first block's queries also to ``lookahead`` frames
after it. Look-ahead in the first block only keeps the whole stack's look-ahead at
``lookahead`` frames (in every block it would add up). :meth:`Conformer.step` computes one
chunk with caches (keys/values of the left context, the convolutions' last inputs) and
gives what the masked whole-sequence pass gives for those frames.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from lipspeech.models.causal import causal_conv, causal_conv_step
from lipspeech.models.dropout import Dropout, dropout

#: relative distances (frames) a streaming stack's attention tells apart; farther keys share the end biases
REL_DISTANCE = 32

# per block, what a streamed chunk needs from the frames before it: (keys, values) of up
# to ``left`` frames, each (B, heads, n, D / heads), and the depthwise conv's last k - 1 inputs
BlockCache = dict[str, torch.Tensor]


def chunk_attention_mask(
    length: int, chunk: int, left: Optional[int], lookahead: int, device: torch.device
) -> torch.Tensor:
    """(length, length) bool: query i may attend key j (chunked attention).

    Query i of chunk c = i // chunk sees keys c * chunk - left <= j < (c + 1) * chunk + lookahead
    (``left`` None: every earlier frame), and always itself (a padded query then has one key,
    so its softmax stays finite).
    """
    i = torch.arange(length, device=device)
    start = (i // chunk) * chunk
    j = i[None, :]
    allowed = j < (start + chunk + lookahead)[:, None]
    if left is not None:
        allowed &= j >= (start - left)[:, None]
    return allowed | torch.eye(length, dtype=torch.bool, device=device)


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(length, dim) sinusoidal position table (sin on even, cos on odd channels)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.to(dtype)


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> SiLU -> Linear (pre-norm feed-forward).

    Args:
        dim: model width D.
        hidden: inner width.
        dropout: dropout rate.
    """

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.SiLU(),
            Dropout(dropout),
            nn.Linear(hidden, dim),
            Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a key padding mask.

    Args:
        dim: model width D (divisible by ``heads``).
        heads: attention heads.
        dropout: dropout on attention weights and on the output.
        rel_distance: > 0: a learned bias per head and relative distance (-d .. d, clipped) is added
            to the attention scores (the streaming stacks' positions); 0: none.
    """

    def __init__(self, dim: int, heads: int, dropout: float, rel_distance: int = 0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.rel_distance = rel_distance
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * rel_distance + 1)) if rel_distance > 0 else None
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attend over valid frames only.

        Args:
            x: (B, T, D).
            mask: (B, T) bool, True on valid frames.
            allowed: (T, T) bool, which keys each query may see (:func:`chunk_attention_mask`);
                None: all.

        Returns:
            (B, T, D); rows of padded frames are meaningless (callers mask them).
        """
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        keys = mask[:, None, None, :]
        if allowed is not None:
            keys = (keys & allowed) | torch.eye(t, dtype=torch.bool, device=x.device)
        if self.rel_bias is not None:  # an additive float mask: the biases, -inf where a key is not seen
            positions = torch.arange(t, device=x.device)
            keys = self.relative_bias(positions, positions).to(q.dtype)[None].masked_fill(~keys, float("-inf"))
        if self.training and self.attn_dropout > 0 and x.device.type == "cpu":
            # what scaled_dot_product_attention computes, with the cheaper dropout mask
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            if keys.dtype == torch.bool:
                scores = scores.masked_fill(~keys, float("-inf"))
            else:
                scores = scores + keys
            weights = torch.softmax(scores, dim=-1)
            y = dropout(weights, self.attn_dropout, True) @ v
        else:
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)
        return self.dropout(self.out(y.transpose(1, 2).reshape(b, t, d)))

    def relative_bias(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """(heads, Tq, Tk) learned biases of the distances key - query (clipped to +-rel_distance)."""
        assert self.rel_bias is not None
        r = self.rel_distance
        return self.rel_bias[:, (key_pos[None, :] - query_pos[:, None]).clamp(-r, r) + r]

    def step(
        self,
        x: torch.Tensor,
        queries: int,
        cache: Optional[tuple[torch.Tensor, torch.Tensor]],
        left: Optional[int],
        start: int = 0,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One streamed chunk (eval mode, no padding).

        Args:
            x: (B, n, D): the chunk's ``queries`` frames, then its look-ahead frames.
            queries: frames of the chunk.
            cache: (keys, values) of the frames before the chunk, or None at the start.
            left: frames of left context kept (None: all).
            start: the stream's index of the chunk's first frame (for the relative biases).

        Returns:
            (B, queries, D), and the cache for the next chunk.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k_all, v_all = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        else:
            k_all, v_all = k, v
        bias = None
        if self.rel_bias is not None:
            first_key = start - (k_all.shape[2] - n)
            bias = self.relative_bias(torch.arange(start, start + queries, device=x.device),
                                      torch.arange(first_key, start + n, device=x.device)).to(q.dtype)[None]
        y = F.scaled_dot_product_attention(q[:, :, :queries], k_all, v_all, attn_mask=bias)
        past = k_all.shape[2] - n + queries  # the left context and the chunk, not its look-ahead
        keep = past if left is None else min(left, past)
        cache = (k_all[:, :, past - keep : past], v_all[:, :, past - keep : past])
        return self.out(y.transpose(1, 2).reshape(b, queries, d)), cache


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise + GLU, depthwise conv, LayerNorm, SiLU, pointwise.

    Args:
        dim: model width D.
        kernel_size: depthwise kernel (odd).
        dropout: dropout rate.
        causal: frame t's depthwise window is t - k + 1 .. t (streaming), else centred.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float, causal: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conformer kernel size must be odd, got {kernel_size}")
        self.causal = causal
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=0 if causal else kernel_size // 2, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) bool -> (B, T, D)."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)
        y = y * mask[..., None].to(y.dtype)  # padded frames must not leak into valid ones
        y = y.transpose(1, 2)
        y = (causal_conv(self.depthwise, y) if self.causal else self.depthwise(y)).transpose(1, 2)
        y = self.pointwise_out(F.silu(self.norm_mid(y)))
        return self.dropout(y)

    def step(self, x: torch.Tensor, state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One streamed chunk of a causal module: (B, n, D), the last k - 1 depthwise inputs
        (B, D, k - 1) or None at the start -> (B, n, D) and the next state."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)
        y, state = causal_conv_step(self.depthwise, y, state)
        return self.pointwise_out(F.silu(self.norm_mid(y.transpose(1, 2)))), state


class ConformerBlock(nn.Module):
    """One conformer block.

    Args:
        dim: model width D.
        heads: attention heads.
        ffn_dim: feed-forward inner width.
        kernel_size: convolution module kernel (odd).
        dropout: dropout rate.
        causal: causal convolution module (streaming).
        relative: relative-position attention biases (streaming).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float, causal: bool = False,
                 relative: bool = False):
        super().__init__()
        self.ff1 = FeedForward(dim, ffn_dim, dropout)
        self.attn = SelfAttention(dim, heads, dropout, REL_DISTANCE if relative else 0)
        self.conv = ConvModule(dim, kernel_size, dropout, causal)
        self.ff2 = FeedForward(dim, ffn_dim, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T, D), (B, T) bool, optional (T, T) attention mask -> (B, T, D), zero on padded frames."""
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask, allowed)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x) * mask[..., None].to(x.dtype)

    def step(self, x: torch.Tensor, queries: int, cache: BlockCache, left: Optional[int], start: int = 0) -> torch.Tensor:
        """One streamed chunk: (B, n, D) = the chunk's ``queries`` frames then look-ahead frames, the first
        at stream index ``start`` -> (B, queries, D); ``cache`` (empty at the start) is updated in place."""
        x = x + 0.5 * self.ff1(x)
        kv = (cache["k"], cache["v"]) if "k" in cache else None
        y, (cache["k"], cache["v"]) = self.attn.step(x, queries, kv, left, start)
        x = x[:, :queries] + y
        y, cache["conv"] = self.conv.step(x, cache.get("conv"))
        x = x + y
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """A stack of conformer blocks with sinusoidal input positions.

    Args:
        dim: model width D.
        layers: number of blocks.
        heads: attention heads per block.
        ffn_dim: feed-forward inner width.
        kernel_size: convolution module kernel (odd).
        dropout: dropout rate.
        causal: streaming stack: causal convolutions (module docstring).
        relative: relative-position biases instead of absolute input positions (a streaming stack has
            both; one without the other is a study model that cannot stream).
    """

    def __init__(
        self, dim: int, layers: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float, causal: bool = False,
        relative: bool = False,
    ):
        super().__init__()
        self.dim = dim
        self.causal = causal
        self.relative = relative
        self.input_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, ffn_dim, kernel_size, dropout, causal, self.relative) for _ in range(layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        chunk: Optional[int] = None,
        left: Optional[int] = None,
        lookahead: int = 0,
    ) -> torch.Tensor:
        """Encode a padded sequence.

        Args:
            x: (B, T, D) inputs.
            mask: (B, T) bool, True on valid frames.
            chunk: attend within chunks of this many frames (causal stacks only); None: the whole sequence.
            left: frames before its chunk a frame may attend to (None: all).
            lookahead: frames after its chunk the first block's queries may attend to.

        Returns:
            (B, T, D) outputs, zero on padded frames.
        """
        if not self.relative:
            x = x + sinusoidal_positions(x.shape[1], self.dim, x.device, x.dtype)[None]
        x = self.input_dropout(x) * mask[..., None].to(x.dtype)
        first = rest = None
        if chunk is not None:
            first = chunk_attention_mask(x.shape[1], chunk, left, lookahead, x.device)
            rest = first if lookahead == 0 else chunk_attention_mask(x.shape[1], chunk, left, 0, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, first if i == 0 else rest)
        return x

    def step(
        self, x: torch.Tensor, queries: int, caches: list[BlockCache], left: Optional[int], start: int = 0
    ) -> torch.Tensor:
        """One streamed chunk (eval mode): the chunk's frames and its look-ahead frames (B, n, D), the
        first at stream index ``start`` -> (B, queries, D), equal to :meth:`forward` with the same
        chunking on those frames.

        ``caches``: one dict per block, empty at the start of a stream; updated in place.
        """
        if not (self.causal and self.relative):
            raise ValueError("streamed decoding needs a causal conformer with relative positions (streaming)")
        for block, cache in zip(self.blocks, caches):
            x = block.step(x, queries, cache, left, start)
        return x
