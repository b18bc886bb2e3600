"""The model's streaming mode: chunk-by-chunk decoding equals the masked whole-sequence pass,
a whole-clip chunk equals offline synthesis, nothing after a chunk's look-ahead reaches it,
training draws chunk sizes, and the offline model is what it was."""

import copy

import pytest
import torch
import yaml
from tinymodels import tiny_ltbs

from lipspeech.core.config import ConfigError, validate_config
from lipspeech.models import build_model
from lipspeech.models.batch import Batch
from lipspeech.models.presets import model_config
from lipspeech.models.streaming import StreamDecoder, algorithmic_latency_ms
from lipspeech.training.bundle import REMOVED_MODEL_KEYS, upgrade
from lipspeech.training.stage import experiment_model_config


def streaming_model(preset="tiny", **keys):
    torch.manual_seed(0)
    model = build_model(model_config(preset, {"streaming": True, **keys})).eval()
    with torch.no_grad():  # the couplings start as the identity and the relative biases at zero: move them
        for p in model.postnet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, p in model.named_parameters():
            if name.endswith("rel_bias"):
                p.add_(torch.randn_like(p))
            if name.startswith("lookahead."):  # the decoder look-ahead starts as the identity
                p.add_(torch.randn_like(p) * 0.02)
    return model


def stream(model, video, pushes, **kwargs):
    """Push ``video`` (T, 1, H, W) in pieces of the given sizes, then flush; the concatenated mels."""
    dec = StreamDecoder(model, **kwargs)
    coarse, post, i = [], [], 0
    for n in pushes:
        c, p = dec.push(video[i : i + n])
        coarse.append(c)
        post.append(p)
        i += n
    c, p = dec.flush()
    return torch.cat(coarse + [c]), torch.cat(post + [p])


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_chunk_by_chunk_equals_masked_whole_pass(chunk):
    """The cached decoder gives infer(chunk_frames=C) (what training optimises) for any push pattern."""
    model = streaming_model(stream_left_context_frames=6)
    t = 23
    video = torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(1))
    coarse, post = model.infer(video, torch.tensor([t]), temperature=0.0, chunk_frames=chunk)
    for pushes in ([t], [1] * t, [4, 7, 2, 10]):
        c, p = stream(model, video[0], pushes, chunk_frames=chunk, temperature=0.0)
        assert c.shape == (4 * t, 80)
        torch.testing.assert_close(c, coarse[0], atol=2e-5, rtol=0)
        torch.testing.assert_close(p, post[0], atol=2e-5, rtol=0)


def test_whole_clip_chunk_equals_offline_synthesis():
    """With the chunk covering the clip, streaming synthesis is offline synthesis, sampled z included."""
    model = streaming_model()
    t = 17
    video = torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(2))
    coarse, post = model.infer(video, torch.tensor([t]), generator=torch.Generator().manual_seed(3))
    c, p = stream(model, video[0], [t], chunk_frames=t, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c, coarse[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(p, post[0], atol=1e-6, rtol=0)
    # and in small pushes: the same mels (z is drawn when the one chunk is decoded)
    c, p = stream(model, video[0], [2] * 8 + [1], chunk_frames=40, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(p, post[0], atol=2e-5, rtol=0)


def test_nothing_after_the_lookahead_reaches_a_chunk():
    """Chunk c's mel depends on frames up to (c + 1) C + A - 1: changing later frames leaves it alone,
    changing the last look-ahead frame does not."""
    model = streaming_model(stream_lookahead_frames=2)
    t, chunk, a = 20, 5, 2
    video = torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([t])
    base, _ = model.infer(video, lengths, temperature=0.0, chunk_frames=chunk)
    later = video.clone()
    later[:, chunk + a :] = torch.randn_like(later[:, chunk + a :])
    moved, _ = model.infer(later, lengths, temperature=0.0, chunk_frames=chunk)
    assert torch.equal(moved[0, : 4 * chunk], base[0, : 4 * chunk])
    assert not torch.allclose(moved[0, 4 * chunk :], base[0, 4 * chunk :])
    edge = video.clone()
    edge[:, chunk + a - 1] = torch.randn_like(edge[:, chunk + a - 1])
    moved, _ = model.infer(edge, lengths, temperature=0.0, chunk_frames=chunk)
    assert not torch.allclose(moved[0, : 4 * chunk], base[0, : 4 * chunk])
    # the whole-clip pass of the same model reads ahead: there the first chunk moves
    whole, _ = model.infer(video, lengths, temperature=0.0)
    whole_later, _ = model.infer(later, lengths, temperature=0.0)
    assert not torch.allclose(whole_later[0, : 4 * chunk], whole[0, : 4 * chunk])
    assert algorithmic_latency_ms(chunk, a) == 280.0


@pytest.mark.parametrize("chunk,a,dec_la", [(1, 1, 1), (1, 0, 2), (2, 1, 1), (2, 1, 3)])
def test_decoder_lookahead(chunk, a, dec_la):
    """With decoder look-ahead D (the decoder's states read out with the next 4D) the cached decoder still
    gives the masked pass, for any push pattern and in a padded batch; chunk c's mel reads frames up to
    (c + 1 + ceil(D / C)) C + A - 1 and none after them; at its initial (zero) weights the look-ahead
    changes nothing."""
    torch.manual_seed(0)
    keys = {"streaming": True, "stream_lookahead_frames": a, "stream_left_context_frames": 6}
    fresh = build_model(model_config("tiny", {**keys, "stream_decoder_lookahead_frames": dec_la})).eval()
    plain = build_model(model_config("tiny", keys)).eval()
    plain.load_state_dict({k: v for k, v in fresh.state_dict().items() if not k.startswith("lookahead.")})
    clip = torch.randn(1, 9, 1, 88, 88, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(fresh.infer(clip, torch.tensor([9]), temperature=0.0, chunk_frames=chunk)[1],
                               plain.infer(clip, torch.tensor([9]), temperature=0.0, chunk_frames=chunk)[1],
                               atol=0, rtol=0)
    model = streaming_model(stream_left_context_frames=6, stream_lookahead_frames=a,
                            stream_decoder_lookahead_frames=dec_la)
    t = 19
    video = torch.randn(1, t, 1, 88, 88, generator=torch.Generator().manual_seed(7))
    lengths = torch.tensor([t])
    coarse, post = model.infer(video, lengths, temperature=0.0, chunk_frames=chunk)
    for pushes in ([t], [1] * t, [4, 7, 2, 6]):
        c, p = stream(model, video[0], pushes, chunk_frames=chunk, temperature=0.0)
        torch.testing.assert_close(c, coarse[0], atol=2e-5, rtol=0)
        torch.testing.assert_close(p, post[0], atol=2e-5, rtol=0)
    needed = (1 + -(-dec_la // chunk)) * chunk + a  # frames the first chunk waits for
    assert algorithmic_latency_ms(chunk, a, dec_la) == 40.0 * needed
    later = video.clone()
    later[:, needed:] = torch.randn_like(later[:, needed:])
    moved, _ = model.infer(later, lengths, temperature=0.0, chunk_frames=chunk)
    assert torch.equal(moved[0, : 4 * chunk], coarse[0, : 4 * chunk])
    edge = video.clone()
    edge[:, needed - 1] = torch.randn_like(edge[:, needed - 1])
    moved, _ = model.infer(edge, lengths, temperature=0.0, chunk_frames=chunk)
    assert not torch.allclose(moved[0, : 4 * chunk], coarse[0, : 4 * chunk])
    # in a padded batch: what the clip gives alone (zeros past its end, in the batch as in the stream)
    batch = torch.zeros(2, t + 5, 1, 88, 88)
    batch[0, :t], batch[1] = video[0], torch.randn(t + 5, 1, 88, 88, generator=torch.Generator().manual_seed(9))
    _, batched = model.infer(batch, torch.tensor([t, t + 5]), temperature=0.0, chunk_frames=chunk)
    torch.testing.assert_close(batched[0, : 4 * t], post[0], atol=2e-5, rtol=0)


def test_chunked_pass_ignores_padding():
    """In chunked mode an utterance batched with a longer one gives what it gives alone."""
    model = streaming_model()
    g = torch.Generator().manual_seed(5)
    short, long = torch.randn(1, 11, 1, 88, 88, generator=g), torch.randn(1, 19, 1, 88, 88, generator=g)
    batch = torch.zeros(2, 19, 1, 88, 88)
    batch[0, :11], batch[1] = short[0], long[0]
    coarse, post = model.infer(batch, torch.tensor([11, 19]), temperature=0.0, chunk_frames=4)
    alone, alone_post = model.infer(short, torch.tensor([11]), temperature=0.0, chunk_frames=4)
    torch.testing.assert_close(coarse[0, :44], alone[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(post[0, :44], alone_post[0], atol=2e-5, rtol=0)


def test_training_draws_the_chunk_size():
    """Training uses the chunk sizes of train_chunks: with one size and no dropout, a training pass's
    losses are the eval pass's with that chunk size, and differ from the whole-clip ones."""
    keys = {"dropout": 0.0, "var_dropout": 0.0, "stream_train_chunks": [3], "stream_chunk_frames": 3}
    torch.manual_seed(0)
    model = build_model(model_config("tiny", {"streaming": True, **keys}))
    model.eval()  # ActNorm's data-dependent init happens on the first training pass; skip it
    for m in model.modules():
        if hasattr(m, "initialized"):
            m.initialized.fill_(True)
    g = torch.Generator().manual_seed(6)
    b, t = 2, 13
    batch = Batch(video=torch.randn(b, t, 1, 88, 88, generator=g), video_lengths=torch.tensor([t, t]),
                  mel=torch.randn(b, 4 * t, 80, generator=g), mel_lengths=torch.tensor([4 * t] * 2),
                  units=torch.randint(0, 200, (b, 2 * t), generator=g), pitch=torch.randn(b, t, generator=g),
                  energy=torch.randn(b, t, generator=g))

    def losses(train, chunks=None):
        if chunks is not None:
            model.streaming = type(model.streaming)(3, 2, 25, tuple(chunks))
        model.train(train)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # keep the front-end's running statistics
                m.eval()
        with torch.no_grad():
            return {k: float(v) for k, v in model(batch).losses.items()}

    evaluated = losses(False)
    assert losses(True, [3]) == pytest.approx(evaluated, abs=1e-5)
    assert losses(True, [0])["mel_l1"] != pytest.approx(evaluated["mel_l1"], abs=1e-5)


def test_offline_model_is_unchanged_and_refuses_chunks():
    """Streaming off builds the offline model: symmetric convolutions, input positions, no chunks."""
    model = build_model(model_config("tiny", {})).eval()
    assert model.streaming is None and not model.encoder.causal
    assert model.encoder.blocks[0].conv.depthwise.padding == (3,)
    video = torch.randn(1, 6, 1, 88, 88)
    with pytest.raises(ValueError, match="streaming mode"):
        model.infer(video, torch.tensor([6]), chunk_frames=2)
    with pytest.raises(ValueError, match="streaming mode"):
        StreamDecoder(model)
    # a checkpoint written before the streaming keys loads as the offline model it was
    cfg = model_config("tiny", {})
    old = {k: v for k, v in cfg.items() if k != "streaming" and not k.startswith("stream_")}
    state, _ = upgrade({"model_cfg": old, "model": {}, "format": 2, "bundle": {
        "mel": {"n_mels": 80}, "roi": {}, "speakers": None, "config_hash": "x", "corpus": None}})
    assert state["model_cfg"] == cfg
    # a key of an option since removed loads at the value that is today's model, and only there
    for key, today in REMOVED_MODEL_KEYS.items():
        written = {"model_cfg": {**cfg, key: today}, "model": {}, "format": 2, "bundle": {
            "mel": {"n_mels": 80}, "roi": {}, "speakers": None, "config_hash": "x", "corpus": None}}
        assert upgrade(written)[0]["model_cfg"] == cfg
        written["model_cfg"][key] = not today
        with pytest.raises(ValueError, match=f"{key} = {not today!r}, an option since removed"):
            upgrade(written)


def test_streaming_config_sections(tmp_path):
    """model.streaming / an experiment's streaming map onto the stream_* keys; model_from and
    decode_chunk_frames are checked when the config is validated."""
    tiny = {"preset": "tiny", "overrides": {}}  # a model section
    cfg = experiment_model_config({"name": "s", "streaming": {"chunk_frames": 4, "lookahead_frames": 1}}, tiny)
    assert cfg["streaming"] and cfg["stream_chunk_frames"] == 4 and cfg["stream_lookahead_frames"] == 1
    assert cfg["stream_left_context_frames"] == 25
    assert not experiment_model_config({"name": "o"}, tiny)["streaming"]
    on = experiment_model_config({"name": "o"}, {**tiny, "streaming": {}})
    assert on["streaming"]
    with pytest.raises(ConfigError, match="streaming.chunk"):
        experiment_model_config({"name": "s", "streaming": {"chunk": 4}}, tiny)
    with pytest.raises(ConfigError, match="stream_chunk_frames"):
        experiment_model_config({"name": "s", "streaming": {"chunk_frames": 0}}, tiny)

    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((repo / "config.yaml").read_text())
    base["experiments"] = yaml.safe_load((repo / "configs" / "streaming.yaml").read_text())["experiments"]
    validate_config(copy.deepcopy(base))
    bad = copy.deepcopy(base)
    bad["experiments"][2]["model_from"] = "ltbs_stream_c5"
    with pytest.raises(ConfigError, match="model_from"):
        validate_config(bad)
    bad = copy.deepcopy(base)
    bad["experiments"][0]["decode_chunk_frames"] = 5
    with pytest.raises(ConfigError, match="needs a streaming model"):
        validate_config(bad)
    # a stage job gets its one entry (--experiment JSON): the references were checked with the whole config
    import argparse
    import json

    from lipspeech.training.cli import experiment

    entry = base["experiments"][2]
    args = argparse.Namespace(exp=entry["name"], experiment=json.dumps(entry))
    assert experiment(args, validate_config({}))["model_from"] == "ltbs_stream"


def test_report_labels_say_how_a_streaming_model_was_decoded():
    from lipspeech.evaluation.report.columns import describe_experiment, experiment_label

    model = {"preset": "small"}
    stream = {"name": "st", "streaming": {"chunk_frames": 5}}
    chunked = {"name": "st_c5", "model_from": "st", "decode_chunk_frames": 5}
    assert experiment_label({"name": "ltbs"}, model) == "ltbs (full model)"
    assert experiment_label(stream, model) == "st (streaming, whole clip)"
    assert experiment_label(chunked, model) == "st_c5 (model of st, chunks of 5)"
    assert "streaming mode (chunk_frames=5)" in describe_experiment(stream, model)
    assert describe_experiment(chunked, model) == "the trained model of st; decoded chunk by chunk, 5 video frames a chunk"


def test_a_study_model_has_only_the_restrictions_it_names():
    """stream_restrictions switches each streaming restriction alone (the cause table of the streaming
    model's quality gap): the parts named are causal / relative / chunked, the rest are offline."""
    from lipspeech.models.presets import STREAM_RESTRICTIONS

    full = build_model(model_config("tiny", {"streaming": True}))
    assert full.streaming.can_stream and full.streaming.restrictions == frozenset(STREAM_RESTRICTIONS)
    assert full.encoder.causal and full.encoder.relative and full.decoder.causal and full.frontend.causal

    model = build_model(model_config("tiny", {"streaming": True, "stream_restrictions": ["causal_decoder"]}))
    assert not model.streaming.can_stream
    assert model.decoder.causal and not model.encoder.causal and not model.frontend.causal
    assert not model.decoder.relative and model.decoder.blocks[0].attn.rel_bias is None
    assert model.encoder.blocks[0].conv.depthwise.padding == (3,) and model.decoder.blocks[0].conv.depthwise.padding == (0,)

    rel = build_model(model_config("tiny", {"streaming": True, "stream_restrictions": ["relative_positions"]}))
    assert rel.encoder.relative and not rel.encoder.causal and rel.encoder.blocks[0].attn.rel_bias is not None
    assert rel.encoder.blocks[0].conv.depthwise.padding == (3,)  # centred convolutions

    # no chunked attention: whole clips only, in training too (no chunk size is drawn)
    model.train()
    assert model._chunk() is None
    model.eval()
    video = torch.randn(1, 6, 1, 88, 88)
    with pytest.raises(ValueError, match="chunked attention"):
        model.infer(video, torch.tensor([6]), chunk_frames=2)
    with pytest.raises(ValueError, match="study model without"):
        StreamDecoder(model)
    chunked = build_model(model_config("tiny", {"streaming": True, "stream_restrictions": ["chunked_attention"],
                                                "stream_train_chunks": [3]})).train()
    assert chunked._chunk() == 3 and not chunked.encoder.causal and not chunked.encoder.relative
    with pytest.raises(ConfigError, match="stream_restrictions"):
        model_config("tiny", {"streaming": True, "stream_restrictions": ["causal_ears"]})
    # the schema names the same restrictions as the model code
    from lipspeech.core.config import load_schema

    assert tuple(load_schema()["definitions"]["stream_restriction"]["enum"]) == STREAM_RESTRICTIONS


def test_study_models_train_and_the_streaming_run_key_is_unchanged():
    """Each single-restriction model takes a training step with finite losses and gradients; a model
    with every restriction keeps the run key it had before stream_restrictions existed (its results
    are not retrained), a study model gets its own."""
    from lipspeech.core.config import config_hash
    from lipspeech.models.presets import STREAM_RESTRICTIONS
    from lipspeech.training.stage import _run_key

    cfg = model_config("tiny", {"streaming": True})
    before = {k: v for k, v in cfg.items() if k != "stream_restrictions"}
    assert _run_key(cfg, {}, {}) == config_hash(before, {}, {})
    assert _run_key({**cfg, "stream_restrictions": ["causal_frontend"]}, {}, {}) != _run_key(cfg, {}, {})
    g = torch.Generator().manual_seed(6)
    b, t = 2, 9
    batch = Batch(video=torch.randn(b, t, 1, 88, 88, generator=g), video_lengths=torch.tensor([t, t - 2]),
                  mel=torch.randn(b, 4 * t, 80, generator=g), mel_lengths=torch.tensor([4 * t, 4 * (t - 2)]),
                  units=torch.randint(0, 200, (b, 2 * t), generator=g), pitch=torch.randn(b, t, generator=g),
                  energy=torch.randn(b, t, generator=g))
    for name in STREAM_RESTRICTIONS:
        torch.manual_seed(0)
        model = build_model(model_config("tiny", {"streaming": True, "stream_restrictions": [name],
                                                  "stream_train_chunks": [2]})).train()
        out = model(batch)
        total = out.losses["total"]
        total.backward()
        assert torch.isfinite(total), name
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters()), name
        with torch.no_grad():  # validation's pass: whole clips, or chunks of chunk_frames with chunked attention
            assert torch.isfinite(model.eval()(batch).losses["total"]), name


@pytest.mark.parametrize("k, dilation", [(3, 1), (7, 1), (3, 2)])
def test_an_aligned_kernel_reads_what_the_centred_one_reads_of_the_past(k, dilation):
    """A centred kernel aligned for causal use gives, at every frame, what the centred convolution gives
    when the frames after it are zero; copied as it is, it gives that (k - 1) / 2 * dilation frames late."""
    from lipspeech.models.causal import align_centred_kernel, causal_conv

    torch.manual_seed(0)
    centred = torch.nn.Conv1d(4, 5, k, dilation=dilation, padding=dilation * (k - 1) // 2)
    causal = torch.nn.Conv1d(4, 5, k, dilation=dilation)
    x = torch.randn(1, 4, 20)
    with torch.no_grad():
        causal.bias.copy_(centred.bias)
        causal.weight.copy_(centred.weight)
        late = causal_conv(causal, x)
        causal.weight.copy_(align_centred_kernel(centred.weight, -1))
        aligned = causal_conv(causal, x)
        for t in range(20):
            past = x.clone()
            past[..., t + 1:] = 0
            torch.testing.assert_close(aligned[..., t], centred(past)[..., t])
        shift = dilation * (k - 1) // 2
        torch.testing.assert_close(late[..., shift:], centred(x)[..., :20 - shift])
    with pytest.raises(ValueError, match="odd size"):
        align_centred_kernel(torch.zeros(2, 2, 4), -1)


def test_init_align_copies_every_causal_kernel_aligned(tmp_path):
    """start_from(align=True) from an offline checkpoint: every temporal kernel that is causal in the
    streaming model (stem, conformer, predictors, WaveNets) is its offline kernel aligned; the rest
    is copied as it is."""
    from lipspeech.models.causal import align_centred_kernel
    from lipspeech.training.bundle import load_model, start_from

    ckpt = tiny_ltbs(tmp_path / "off", streaming=False, layers=None)
    source = load_model(ckpt).model.state_dict()
    student = build_model(model_config("tiny", {"streaming": True}))
    copied, kept, aligned = start_from(student, ckpt, align=True)
    expected = {"frontend.conv3d.weight", "encoder.blocks.0.conv.depthwise.weight", "adaptor.pitch.convs.1.weight",
                "decoder.blocks.1.conv.depthwise.weight", "postnet.flows.2.wn.in_convs.0.weight"}
    assert expected <= set(aligned) and set(aligned) <= set(copied)
    mine = student.state_dict()
    for name in copied:
        want = align_centred_kernel(source[name], 2 if name.startswith("frontend") else -1) if name in aligned \
            else source[name]
        assert torch.equal(mine[name], want), name
    assert start_from(build_model(model_config("tiny", {"streaming": True})), ckpt, align=False)[2] == []


def test_start_from_adds_a_speaker_embedding_at_zero(tmp_path):
    """A model given a speaker embedding (n_speakers) and started from a checkpoint without one starts
    with the embedding at zero: for every speaker it synthesises what the checkpoint does; a model
    that had one keeps the checkpoint's."""
    from lipspeech.training.bundle import load_model, start_from

    cfg = model_config("tiny")
    ckpt = tiny_ltbs(tmp_path / "plain", streaming=False, layers=None)
    source = load_model(ckpt).model.eval()
    torch.manual_seed(1)
    student = build_model(model_config("tiny", {"n_speakers": 3}))
    assert student.speaker_embed.weight.abs().sum() > 0  # its own draw before
    copied, kept, _ = start_from(student, ckpt, align=False)
    assert kept == ["speaker_embed.weight"] and torch.equal(student.speaker_embed.weight, torch.zeros(3, cfg["d_model"]))
    student.eval()
    video, lengths = torch.randn(1, 6, 1, 88, 88), torch.tensor([6])
    want = source.infer(video, lengths, temperature=0.0)
    for speaker in range(3):
        got = student.infer(video, lengths, temperature=0.0, speakers=torch.tensor([speaker]))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    # a checkpoint with an embedding gives its own rows, not zeros
    with torch.no_grad():
        student.speaker_embed.weight.normal_()
    saved = tmp_path / "spk.pt"
    state = torch.load(ckpt, weights_only=False)
    state["model_cfg"] = {**state["model_cfg"], "n_speakers": 3}
    state["model"] = student.state_dict()
    state.pop("ema", None)
    torch.save(state, saved)
    other = build_model(model_config("tiny", {"n_speakers": 3}))
    copied, kept, _ = start_from(other, saved, align=False)
    assert kept == [] and torch.equal(other.speaker_embed.weight, student.speaker_embed.weight)
