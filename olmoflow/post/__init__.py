"""Post-training pieces shared by the sft, dpo and rlvr stages (olmoflow/stages/): the chat template and loss
mask (chat.py), data plumbing (data.py), log-probabilities (logprobs.py), the SFT, DPO and GRPO objectives
(sft.py, dpo.py, grpo.py), rollouts with active sampling (rollout.py), verifiable rewards (verifiers.py), and
in-stage checkpoints and plots (state.py, plots.py)."""
