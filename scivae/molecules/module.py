"""The molecule VAE module: GRU encoder to a Gaussian posterior, GRU decoder conditioned on z at every step.

Architecture (close to the MOSES VAE, Polykovskiy et al. 2020, whose defaults are the defaults here):

* encoder: token embedding -> GRU (optionally bidirectional) -> last hidden state(s) -> :class:`GaussianHead`;
* decoder: ``z`` -> linear map to the initial hidden state of every layer; at each step the input is the
  embedding of the previous token concatenated with ``z``; a stacked GRU; a linear map to token logits.

The reconstruction term is the per-molecule log-likelihood ``sum_t log p(x_t | x_<t, z)`` over the real tokens
(and the end token), padding masked, so the objective is the true ELBO of a molecule. (The MOSES VAE averages
over tokens and weighs the KL by 0.05, which lets the decoder ignore the prior and memorise.)

Word dropout (Bowman et al. 2016) replaces a fraction of the decoder's input tokens by ``<unk>`` during
training, so the decoder must rely on ``z`` more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical
from torch.nn.utils.rnn import pack_padded_sequence

from scivae.core import Batch, GaussianHead, GaussianPosterior, KLConfig, VAEModule
from scivae.molecules.constraints import DecodingConstraint
from scivae.molecules.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID


class MolVAEModule(VAEModule):
    """Sequence VAE over token ids.

    A batch holds ``"x"``: int64 ``(batch, L)`` token ids ending with ``<eos>`` and padded with ``<pad>``, and
    ``"length"``: int64 ``(batch,)`` number of ids including ``<eos>``.

    Parameters
    ----------
    vocab_size
        Number of tokens, special tokens included.
    n_latent
        Latent dimensions.
    embedding_dim
        Token embedding width (shared by encoder and decoder).
    encoder_hidden, encoder_layers, bidirectional
        Encoder GRU.
    encoder_dropout
        Dropout on the encoder's input embeddings.
    decoder_hidden, decoder_layers
        Decoder GRU.
    decoder_dropout
        Dropout between decoder GRU layers.
    word_dropout
        Probability of replacing a decoder input token by ``<unk>`` while training.
    kl_config
        Collapse controls.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        n_latent: int = 128,
        embedding_dim: int = 64,
        encoder_hidden: int = 256,
        encoder_layers: int = 1,
        bidirectional: bool = False,
        encoder_dropout: float = 0.0,
        decoder_hidden: int = 512,
        decoder_layers: int = 3,
        decoder_dropout: float = 0.0,
        word_dropout: float = 0.0,
        kl_config: KLConfig | None = None,
    ) -> None:
        super().__init__(n_latent, kl_config)
        self.vocab_size = vocab_size
        self.decoder_layers = decoder_layers
        self.decoder_hidden = decoder_hidden
        self.word_dropout = word_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.encoder_dropout = nn.Dropout(encoder_dropout)
        self.encoder = nn.GRU(
            embedding_dim,
            encoder_hidden,
            num_layers=encoder_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.n_directions = 2 if bidirectional else 1
        self.head = GaussianHead(encoder_hidden * self.n_directions, n_latent)
        self.latent_to_hidden = nn.Linear(n_latent, decoder_layers * decoder_hidden)
        self.decoder = nn.GRU(
            embedding_dim + n_latent,
            decoder_hidden,
            num_layers=decoder_layers,
            batch_first=True,
            dropout=decoder_dropout if decoder_layers > 1 else 0.0,
        )
        self.output = nn.Linear(decoder_hidden, vocab_size)

    # -- encoder ---------------------------------------------------------------------------------------
    def inference(self, batch: Batch) -> GaussianPosterior:
        lengths = batch["length"]
        x = batch["x"][:, : int(lengths.max())]
        emb = self.encoder_dropout(self.embedding(x))
        if self.n_directions == 1:
            # A forward GRU's top-layer output at the last real token is its final state there; running over the
            # padded batch and gathering it is exact and, on CPU, several times faster than packed sequences.
            out, _ = self.encoder(emb)
            last = out[torch.arange(x.shape[0], device=x.device), lengths - 1]
        else:  # the backward direction must start at each molecule's own last token
            packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.encoder(packed)  # (layers * directions, batch, hidden)
            last = h[-self.n_directions :].transpose(0, 1).reshape(x.shape[0], -1)
        return self.head(last)

    # -- decoder ---------------------------------------------------------------------------------------
    def initial_state(self, z: Tensor) -> Tensor:
        """Decoder initial hidden state ``(layers, batch, hidden)`` from ``z``."""
        h = self.latent_to_hidden(z).view(z.shape[0], self.decoder_layers, self.decoder_hidden)
        return h.transpose(0, 1).contiguous()

    def _teacher_forced_logits(self, z: Tensor, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        lengths = batch["length"]
        x = batch["x"][:, : int(lengths.max())]
        bos = torch.full((x.shape[0], 1), BOS_ID, dtype=x.dtype, device=x.device)
        inputs = torch.cat([bos, x[:, :-1]], dim=1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=x.device) < self.word_dropout
            drop[:, 0] = False  # keep <bos>
            inputs = inputs.masked_fill(drop, UNK_ID)
        emb = self.embedding(inputs)
        z_steps = z.unsqueeze(1).expand(-1, emb.shape[1], -1)
        # The decoder is causal, so outputs at real positions never see the padding after <eos>: no packing
        # (the loss masks the padded positions).
        out, _ = self.decoder(torch.cat([emb, z_steps.to(emb.dtype)], dim=-1), self.initial_state(z))
        return self.output(out), x, lengths

    def generative(self, z: Tensor, batch: Batch) -> Categorical:
        """Per-position token distributions under teacher forcing, shape ``(batch, L)``."""
        logits, _, _ = self._teacher_forced_logits(z, batch)
        return Categorical(logits=logits.float())

    def log_likelihood(self, batch: Batch, z: Tensor) -> Tensor:
        """``sum_t log p(x_t | x_<t, z)`` over each molecule's tokens and ``<eos>``, shape ``(batch,)``."""
        logits, x, lengths = self._teacher_forced_logits(z, batch)
        nll = F.cross_entropy(logits.float().transpose(1, 2), x, reduction="none")  # (batch, L)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        return -(nll * mask).sum(1)

    @torch.no_grad()
    def reconstruction_accuracy(self, batch: Batch, posterior: GaussianPosterior) -> dict[str, Tensor]:
        """Per molecule, from the posterior mean: exact reconstruction and the fraction of correct tokens.

        Greedy decoding rebuilds a molecule exactly if and only if, given the right prefix, the most likely next
        token is right at every position; so one teacher-forced pass gives the greedy exact-match figure (without
        the syntax mask, which can only help).
        """
        logits, x, lengths = self._teacher_forced_logits(posterior.mu, batch)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        right = (logits.argmax(-1) == x) & mask
        return {
            "reconstruction_accuracy": (right | ~mask).all(1).float(),
            "token_accuracy": right.sum(1).float() / lengths.float(),
        }

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        max_tokens: int,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        constraint: DecodingConstraint | None = None,
    ) -> Tensor:
        """Autoregressive decoding of ``z`` into token ids ``(batch, <= max_tokens + 1)``.

        Sampling draws each token from ``softmax(logits / temperature)``; ``greedy`` takes the most likely
        token. Decoding stops for a molecule at its ``<eos>``; the loop stops when all have ended.
        ``constraint`` (see :mod:`scivae.molecules.constraints`) masks the tokens a sequence may not emit
        next, for example ``<eos>`` before any atom or a ``)`` with no open branch.
        """
        n = z.shape[0]
        h = self.initial_state(z)
        token = torch.full((n,), BOS_ID, dtype=torch.long, device=z.device)
        finished = torch.zeros(n, dtype=torch.bool, device=z.device)
        state = constraint.start(n, z.device) if constraint is not None else None
        out = []
        for _ in range(max_tokens + 1):
            step_in = torch.cat([self.embedding(token), z.to(self.embedding.weight.dtype)], dim=-1).unsqueeze(1)
            o, h = self.decoder(step_in, h)
            logits = self.output(o[:, 0]).float()
            # special tokens other than <eos> can never be emitted
            logits[:, [PAD_ID, BOS_ID, UNK_ID]] = -torch.inf
            if state is not None:
                logits = logits.masked_fill(~constraint.allowed(state), -torch.inf)
            if greedy:
                token = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token = token.masked_fill(finished, PAD_ID)
            if state is not None:
                constraint.advance(state, token)
            out.append(token)
            finished |= token == EOS_ID
            if bool(finished.all()):
                break
        return torch.stack(out, dim=1)
