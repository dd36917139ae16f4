"""Olmo 3's chat template (olmoflow/post/chat.py) as the Jinja text transformers renders: what an exported
checkpoint's tokenizer_config.json carries, so `apply_chat_template` in transformers builds the prompts olmoflow
trained on and generates from.

It renders byte-for-byte the text ChatTemplate encodes: each turn `<|im_start|>{role}\\n{content}<|im_end|>\\n`, a
generation prompt `<|im_start|>assistant\\n`, the roles ChatTemplate takes and no others (anything else is an error,
as it is there). `{% generation %}` marks what the assistant writes, so `return_assistant_tokens_mask` gives SFT's
loss mask. A model that speaks it stops at `<|im_end|>` (STOP): the eos of its generation_config.json.

ChatTemplate tokenizes each piece on its own, transformers the rendered text at once; the special tokens split the
text first, so the two agree unless a message starts with whitespace that a BPE merge would join to the role
header's newline (tests/post/test_chat_export.py checks a multi-turn conversation on curate's tokenizer).
"""

from __future__ import annotations

from olmoflow.post.chat import IM_END, ROLES

STOP = IM_END
"""The token a chat model ends its turn with: generation stops there."""

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] not in " + repr(list(ROLES)) + " or m['content'] is not string %}"
    "{{ raise_exception('chat template: message ' ~ loop.index0 ~ ' needs role in " + "/".join(ROLES)
    + " and string content') }}"
    "{% endif %}"
    "<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The template. transformers renders with trim_blocks (a newline right after a block tag is dropped), hence
`{{ '\\n' }}` after `{% endif %}`."""
