#!/usr/bin/env python3
"""Writes tests/fixtures/config/starcoder2_defaults.json: the value transformers' Starcoder2Config
gives each field a config.json leaves out, for the fields sc2 reads. The config test parses a
config.json without each field in turn and checks sc2 takes this value.

  python3 tools/reference/make_config_defaults.py

Needs transformers (never CI); the fixture is committed.
"""
import json
from pathlib import Path

import transformers
from transformers import Starcoder2Config

# The fields sc2 reads from config.json (include/sc2/models/config.hpp).
FIELDS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "max_position_embeddings", "sliding_window", "norm_epsilon", "use_bias",
          "tie_word_embeddings", "hidden_act", "bos_token_id", "eos_token_id", "pad_token_id"]


def main():
    config = Starcoder2Config()
    defaults = {field: getattr(config, field) for field in FIELDS}
    # rope_theta lives in rope_parameters in transformers 5.
    rope = getattr(config, "rope_parameters", None) or {}
    defaults["rope_theta"] = rope.get("rope_theta", getattr(config, "rope_theta", None))
    out = Path(__file__).resolve().parents[2] / "tests/fixtures/config/starcoder2_defaults.json"
    out.write_text(json.dumps({"transformers_version": transformers.__version__, "defaults": defaults}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
