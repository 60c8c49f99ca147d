"""HAT decoders: a prediction network and a joint network with a HAT output.

HAT (hybrid autoregressive transducer): the joint emits one blank logit b and label
logits z; ``log P(blank) = logsigmoid(b)``, ``log P(y) = logsigmoid(-b) + log_softmax(z)_y``.
The internal LM is ``log_softmax(z)`` with the encoder's contribution to the joint removed,
so the search can subtract it. Vocabulary index 0 is blank (sentencepiece ``<blank>``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from toolkit.losses.transducer import hat_transducer_loss
from toolkit.utils.config import Registry

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


class HatDecoder(nn.Module):
    """Predictor + HAT joiner: the training loss and the step functions the search uses."""

    blank_id = 0

    def __init__(self, predictor: nn.Module, joiner: HatJoiner, vocab_size: int,
                 max_lattice_elems: int = 2 ** 25):
        super().__init__()
        self.predictor, self.joiner = predictor, joiner
        self.vocab_size, self.max_lattice_elems = vocab_size, max_lattice_elems

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
        """Transducer NLL per utterance (B,) for enc (B, T, D), tokens (B, U) (pad 0).

        The (B, T, U+1, V) lattice is built per sub-batch of at most max_lattice_elems
        elements (utterances sorted by lattice size); with several sub-batches each one is
        recomputed in backward (checkpointing), so only one lattice is alive at a time.
        """
        B = enc.shape[0]
        labels = F.pad(tokens, (1, 0))  # (B, U+1), blank first
        pred_p = self.joiner.pred_proj(self.predictor(labels))  # (B, U+1, J)
        enc_p = self.joiner.enc_proj(enc)  # (B, T, J)
        size = enc_lens * (token_lens + 1) * self.vocab_size
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
            idx = torch.tensor(g, device=enc.device)
            T, U = int(enc_lens[idx].max()), int(token_lens[idx].max())
            args = (enc_p[idx, :T], pred_p[idx, : U + 1], tokens[idx, :U], enc_lens[idx], token_lens[idx])
            if len(groups) > 1 and torch.is_grad_enabled():
                costs.append(checkpoint(self._group_loss, *args, use_reentrant=False))
            else:
                costs.append(self._group_loss(*args))
            perm.append(idx)
        return torch.cat(costs)[torch.argsort(torch.cat(perm))]

    def _group_loss(self, enc_p, pred_p, tokens, enc_lens, token_lens):
        logits = self.joiner.logits_projected(enc_p[:, :, None], pred_p[:, None])  # (b, T, U+1, V)
        return hat_transducer_loss(logits, tokens, enc_lens, token_lens)
