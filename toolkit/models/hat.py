"""HAT decoders: a prediction network and a joint network with a HAT output.

HAT (hybrid autoregressive transducer): the joint emits one blank logit b and label
logits z; ``log P(blank) = logsigmoid(b)``, ``log P(y) = logsigmoid(-b) + log_softmax(z)_y``.
The internal LM is ``log_softmax(z)`` with the encoder's contribution to the joint removed,
so the search can subtract it. Vocabulary index 0 is blank (sentencepiece ``<blank>``).

Training loss (``HatDecoder(transducer=...)``): "full" evaluates the joint on every
(t, u) of the B x T x (U+1) lattice; "pruned" (``toolkit.losses.pruned_transducer``)
trains a cheap simple joiner (two linear projections, built only then) whose occupancies
choose prune_range symbol positions per frame, and runs the joint there alone.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from toolkit.losses import pruned_transducer
from toolkit.losses.transducer import hat_transducer_loss
from toolkit.utils.config import ConfigError, Registry

PREDICTORS = Registry("predictor")
JOINERS = Registry("joiner")


@PREDICTORS.register("lstm")
class LstmPredictor(nn.Module):
    """Embedding + LSTM over the label history. State: (h, c) each (N, layers, H)."""

    def __init__(self, vocab_size: int, embed_dim: int = 256, hidden_dim: int = 256,
                 num_layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output_dim, self.num_layers = hidden_dim, num_layers

    def forward(self, labels):
        """labels (B, U+1) starting with blank -> (B, U+1, H)."""
        return self.dropout(self.lstm(self.dropout(self.embed(labels)))[0])

    def init_state(self, n, device):
        z = torch.zeros(n, self.num_layers, self.output_dim, device=device)
        return (z, z.clone())

    def step(self, labels, state):
        """labels (N,) -> (out (N, H), new state)."""
        h, c = state
        out, (h, c) = self.lstm(self.embed(labels)[:, None], (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()))
        return out[:, 0], (h.transpose(0, 1), c.transpose(0, 1))


@PREDICTORS.register("stateless")
class StatelessPredictor(nn.Module):
    """Embedding of the last ``context_size`` labels mixed by a depthwise conv (icefall-style).
    State: the last context_size labels (N, context_size)."""

    def __init__(self, vocab_size: int, embed_dim: int = 256, context_size: int = 2, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.context_size = context_size
        self.conv = nn.Conv1d(embed_dim, embed_dim, context_size, groups=embed_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = embed_dim

    def _mix(self, ctx_emb):  # (N, U, k, E) -> (N, U, E)
        N, U, k, E = ctx_emb.shape
        y = self.conv(ctx_emb.reshape(N * U, k, E).transpose(1, 2))  # (N*U, E, 1)
        return F.relu(y.reshape(N, U, E))

    def forward(self, labels):
        """labels (B, U+1) starting with blank -> (B, U+1, E); history padded with blank."""
        padded = F.pad(labels, (self.context_size - 1, 0))  # blank = 0
        ctx = padded.unfold(1, self.context_size, 1)  # (B, U+1, k)
        return self.dropout(self._mix(self.embed(ctx)))

    def init_state(self, n, device):
        return torch.zeros(n, self.context_size - 1, dtype=torch.long, device=device)

    def step(self, labels, state):
        ctx = torch.cat([state, labels[:, None]], dim=1)  # (N, k)
        return self._mix(self.embed(ctx)[:, None])[:, 0], ctx[:, 1:]


@JOINERS.register("hat")
class HatJoiner(nn.Module):
    def __init__(self, enc_dim: int, pred_dim: int, vocab_size: int, joint_dim: int = 256):
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim)
        self.out = nn.Linear(joint_dim, vocab_size)

    def logits_projected(self, enc_p, pred_p):
        """Projected enc (..., J) + pred (..., J), broadcast -> joint logits (..., V), blank at 0."""
        return self.out(torch.tanh(enc_p + pred_p))

    def log_probs_projected(self, enc_p, pred_p):
        """Projected enc (..., J) + pred (..., J), broadcast -> HAT log-probs (..., V)."""
        return hat_log_probs(self.logits_projected(enc_p, pred_p))

    def ilm_log_probs(self, pred_p):
        """Internal LM log_softmax(z) (..., V) from the predictor alone; blank column is 0."""
        z = self.out(torch.tanh(pred_p))[..., 1:]
        return F.pad(z.log_softmax(-1), (1, 0))


def hat_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """logits (..., V) with blank logit at 0 -> HAT log-probs (..., V), normalised over V."""
    b, z = logits[..., :1], logits[..., 1:]
    return torch.cat([F.logsigmoid(b), F.logsigmoid(-b) + z.log_softmax(-1)], dim=-1)


def lower_blank(log_probs: torch.Tensor, penalty: float) -> torch.Tensor:
    """HAT log-probs (..., V) -> those of the same joint with ``penalty`` subtracted from its
    blank logit b before normalisation (icefall's blank penalty): ``log P(blank) =
    logsigmoid(b - p)``, ``log P(y) = logsigmoid(p - b) + log_softmax(z)_y``.

    b and log_softmax(z) are recovered from the normalised values: the label columns sum to
    ``logsigmoid(-b)`` (stable where blank takes nearly all the mass), and
    ``b = logsigmoid(b) - logsigmoid(-b)``. A positive penalty moves mass from blank to the
    labels without changing the labels' relative order. ``toolkit.export.runtime`` does the
    same in numpy.
    """
    if not penalty:
        return log_probs
    blank, labels = log_probs[..., :1], log_probs[..., 1:]
    not_blank = labels.logsumexp(-1, keepdim=True)  # logsigmoid(-b)
    b = blank - not_blank
    return torch.cat([F.logsigmoid(b - penalty), labels - not_blank + F.logsigmoid(penalty - b)], dim=-1)


# pruned transducer settings; simple_scale and the warm-up as in icefall's pruned recipes
PRUNED_DEFAULTS = {"prune_range": 5, "simple_scale": 0.5, "warmup_steps": 2000, "lm_scale": 0.25, "am_scale": 0.0}
TRANSDUCERS = ("full", "pruned")


class HatDecoder(nn.Module):
    """Predictor + HAT joiner: the training loss and the step functions the search uses.

    transducer: "full" or "pruned"; transducer_conf (pruned only): prune_range (symbol
    positions kept per frame), simple_scale (weight of the simple joiner's loss after
    warm-up), warmup_steps (the scales go from (1, 0.1) to (simple_scale, 1) over these
    training steps, read from :meth:`set_step`), lm_scale / am_scale (smoothing of the
    simple loss). The pruned loss per utterance is simple_w * simple + pruned_w * pruned.
    """

    blank_id = 0

    def __init__(self, predictor: nn.Module, joiner: HatJoiner, vocab_size: int,
                 max_lattice_elems: int = 2 ** 25, transducer: str = "full", transducer_conf: dict | None = None):
        super().__init__()
        self.predictor, self.joiner = predictor, joiner
        self.vocab_size, self.max_lattice_elems = vocab_size, max_lattice_elems
        if transducer not in TRANSDUCERS:
            raise ConfigError(f"transducer must be one of {TRANSDUCERS}, got {transducer!r}")
        unknown = sorted(set(transducer_conf or {}) - set(PRUNED_DEFAULTS))
        if unknown:
            raise ConfigError(f"transducer_conf: unknown key(s) {', '.join(unknown)}; "
                              f"accepted: {', '.join(sorted(PRUNED_DEFAULTS))}")
        self.transducer, self.transducer_conf = transducer, {**PRUNED_DEFAULTS, **(transducer_conf or {})}
        self.step_count = 0
        if transducer == "pruned":  # the simple joiner: encoder and predictor straight to logits
            self.simple_am_proj = nn.Linear(joiner.enc_proj.in_features, vocab_size)
            self.simple_lm_proj = nn.Linear(joiner.pred_proj.in_features, vocab_size)

    def set_step(self, step: int) -> None:
        """The training step, for the pruned loss's warm-up of its scales."""
        self.step_count = int(step)

    # --- search API -------------------------------------------------------------
    def init_state(self, n: int, device=None):
        return self.predictor.init_state(n, device)

    def step(self, labels, state):
        """labels (N,) -> (pred_out (N, P), state); feed blank (0) first."""
        return self.predictor.step(labels, state)

    @staticmethod
    def select_state(state, index):
        """Rows ``index`` (long (K,)) of a predictor state (tensor or tuple of tensors)."""
        if isinstance(state, tuple):
            return tuple(s[index] for s in state)
        return state[index]

    @staticmethod
    def merge_state(keep, new_state, old_state):
        """Per row: new_state where keep (N,) bool is True, else old_state."""
        if isinstance(new_state, tuple):
            return tuple(HatDecoder.merge_state(keep, n, o) for n, o in zip(new_state, old_state))
        return torch.where(keep.view(-1, *[1] * (new_state.dim() - 1)), new_state, old_state)

    def log_probs(self, enc, pred_out):
        """enc (N, D), pred_out (N, P) -> HAT log-probs (N, V)."""
        return self.joiner.log_probs_projected(self.joiner.enc_proj(enc), self.joiner.pred_proj(pred_out))

    def ilm_log_probs(self, pred_out):
        """(N, P) -> internal-LM log-probs (N, V), 0 in the blank column."""
        return self.joiner.ilm_log_probs(self.joiner.pred_proj(pred_out))

    # --- training -----------------------------------------------------------------
    def loss(self, enc, enc_lens, tokens, token_lens):
        """Transducer NLL per utterance (B,) for enc (B, T, D), tokens (B, U) (pad 0); with
        transducer "pruned", the warmed-up mix of the simple and pruned NLLs.

        The joint's lattice, (B, T, U+1, V) or pruned (B, T, S, V), is built per sub-batch
        of at most max_lattice_elems elements (utterances sorted by lattice size); with
        several sub-batches each one is recomputed in backward (checkpointing), so only
        one lattice is alive at a time.
        """
        labels = F.pad(tokens, (1, 0))  # (B, U+1), blank first
        pred_out = self.predictor(labels)  # (B, U+1, P)
        pred_p = self.joiner.pred_proj(pred_out)  # (B, U+1, J)
        enc_p = self.joiner.enc_proj(enc)  # (B, T, J)
        if self.transducer == "full":
            size = enc_lens * (token_lens + 1) * self.vocab_size
            return self._by_sub_batch(self._group_loss, size, enc_p, pred_p, tokens, enc_lens, token_lens)
        conf = self.transducer_conf
        # a window must be able to climb U_b symbols in T_b frames: S - 1 >= U_b / T_b
        S = max(int(conf["prune_range"]), int((token_lens.float() / enc_lens.float()).ceil().max()) + 1)
        simple, occupancy = pruned_transducer.simple_hat_loss(
            self.simple_am_proj(enc), self.simple_lm_proj(pred_out), tokens, enc_lens, token_lens,
            conf["lm_scale"], conf["am_scale"])
        starts = pruned_transducer.prune_ranges(occupancy, enc_lens, token_lens, S)  # (B, T)
        size = enc_lens * S * self.vocab_size
        pruned = self._by_sub_batch(functools.partial(self._pruned_group_loss, S), size, enc_p, pred_p, tokens, enc_lens, token_lens,
                                    starts)
        simple_w, pruned_w = pruned_transducer.loss_scales(self.step_count, conf["simple_scale"],
                                                           conf["warmup_steps"])
        return simple_w * simple + pruned_w * pruned

    def _by_sub_batch(self, fn, size, enc_p, pred_p, tokens, enc_lens, token_lens, starts=None):
        """fn on sub-batches of at most max_lattice_elems lattice elements (``size`` (B,) per
        utterance), each cut to its own T and U; costs back in the batch's order."""
        order = torch.argsort(size, descending=True).tolist()
        groups, cur = [], []
        for i in order:
            if cur and (len(cur) + 1) * int(size[cur[0]]) > self.max_lattice_elems:
                groups.append(cur)
                cur = []
            cur.append(i)
        groups.append(cur)
        costs, perm = [], []
        for g in groups:
            idx = torch.tensor(g, device=enc_p.device)
            T, U = int(enc_lens[idx].max()), int(token_lens[idx].max())
            args = (enc_p[idx, :T], pred_p[idx, : U + 1], tokens[idx, :U], enc_lens[idx], token_lens[idx])
            if starts is not None:
                args += (starts[idx, :T],)
            if len(groups) > 1 and torch.is_grad_enabled():
                costs.append(checkpoint(fn, *args, use_reentrant=False))
            else:
                costs.append(fn(*args))
            perm.append(idx)
        return torch.cat(costs)[torch.argsort(torch.cat(perm))]

    def _group_loss(self, enc_p, pred_p, tokens, enc_lens, token_lens):
        logits = self.joiner.logits_projected(enc_p[:, :, None], pred_p[:, None])  # (b, T, U+1, V)
        return hat_transducer_loss(logits, tokens, enc_lens, token_lens)

    def _pruned_group_loss(self, S, enc_p, pred_p, tokens, enc_lens, token_lens, starts):
        b, T, J = enc_p.shape
        pos = (starts[..., None] + torch.arange(S, device=starts.device)).clamp(max=pred_p.shape[1] - 1)
        pred_w = pred_p.gather(1, pos.reshape(b, T * S, 1).expand(-1, -1, J)).reshape(b, T, S, J)
        logits = self.joiner.logits_projected(enc_p[:, :, None], pred_w)  # (b, T, S, V)
        return pruned_transducer.pruned_hat_loss(logits, tokens, starts, enc_lens, token_lens)
