"""Labels from a large language model (`cactus label`): the method's source of supervision. A language model groups
the entities of a few thousand subsets once; the context-aware encoder learns from those labels, and clusters every
later subset without it. See docs/label.md.

    prompt.py    the prompt template (versioned by its hash) and the re-ask message
    parse.py     a grouping read out of a reply (JSON, or plain text), checked, and turned into labels
    client.py    the OpenAI-compatible chat-completions client: JSON mode, retries, backoff, concurrency
    cache.py     the answers on disk, one file per question, written as they arrive
    labeller.py  label_file: the questions, the re-asks, the output and the summary
"""

from cactus.label.client import ChatClient, EndpointError, RequestFailed
from cactus.label.labeller import label_file
from cactus.label.prompt import DEFAULT_TEMPLATE, Prompt, PromptError

__all__ = ["ChatClient", "DEFAULT_TEMPLATE", "EndpointError", "Prompt", "PromptError", "RequestFailed", "label_file"]
