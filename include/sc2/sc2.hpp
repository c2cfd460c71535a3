#pragma once
/// \file
/// Everything of sc2 that runs on the CPU, which it makes the default
/// backend of the models; includes no CUDA header.
///
///     #include <sc2/sc2.hpp>
///     auto lm = sc2::Starcoder2ForCausalLM::load("path/to/checkpoint");

#include <sc2/backends/cpu.hpp>
#include <sc2/core/context.hpp>
#include <sc2/core/memory.hpp>
#include <sc2/core/arena.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/core/thread_pool.hpp>
#include <sc2/generation/fim.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/generation/sampler.hpp>
#include <sc2/io/config_json.hpp>
#include <sc2/io/gguf.hpp>
#include <sc2/io/mapped_file.hpp>
#include <sc2/io/safetensors.hpp>
#include <sc2/io/tensor_index.hpp>
#include <sc2/models/batch.hpp>
#include <sc2/models/causal_lm.hpp>
#include <sc2/models/checkpoint.hpp>
#include <sc2/models/classifiers.hpp>
#include <sc2/models/config.hpp>
#include <sc2/models/kv_cache.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/models/policies.hpp>
#include <sc2/models/starcoder2.hpp>
#include <sc2/models/weights.hpp>
#include <sc2/models/workspace.hpp>
#include <sc2/ops/copy.hpp>
#include <sc2/quant/blocks.hpp>
#include <sc2/tagging/token_spans.hpp>
#include <sc2/tokenizer/gguf.hpp>
#include <sc2/tokenizer/tokenizer.hpp>
