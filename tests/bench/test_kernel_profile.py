"""bench/kernel_profile.py's kernel classifier, on names the kernels of a CUDA training step really carry."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "kernel_profile", Path(__file__).resolve().parents[2] / "bench" / "kernel_profile.py")
kernel_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kernel_profile)


def test_kernel_names_fall_into_their_kind():
    cases = {
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1": "matmul",
        "nvjet_tst_256x128_64x4_1x2_h_bz_coopA_NNT": "matmul",
        "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8>": "matmul",
        "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>>": "attention",
        "triton_tem_fused_flex_attention_0": "attention",
        "triton_tem_fused_flex_attention_backward_1": "attention",
        "void at::native::(anonymous namespace)::fused_adamw_kernel<float>": "optimizer",
        "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<...>": "optimizer",
        "triton_red_fused_chunk_loss_grad_logsumexp_0": "loss",
        "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>": "copy/cast",
        "Memcpy DtoD (Device -> Device)": "copy/cast",
        "triton_poi_fused_add_mul_rsqrt_silu_3": "other",
        "void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>": "other",
    }
    assert {name: kernel_profile.classify(name) for name in cases} == cases
