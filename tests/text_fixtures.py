"""Tiny randomly initialised text encoders (BERT, RoBERTa, T5) with tokenizers trained at test time."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "kids are talking by the door",
    "dogs are sitting by the door",
    "I am so happy today",
    "this is terrible and I hate it",
    "what a lovely surprise",
    "the meeting is at noon",
]


def _word_tokenizer(special: dict[str, str]):
    """A WordLevel tokenizer over SENTENCES, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    unk = special["unk_token"]
    tok = Tokenizer(models.WordLevel(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=list(dict.fromkeys(special.values()))))
    return tok, PreTrainedTokenizerFast, special


def _bert_like_tokenizer(bos: str, eos: str, pad: str, unk: str, mask: str):
    from tokenizers import processors

    tok, Fast, special = _word_tokenizer({"pad_token": pad, "unk_token": unk, "cls_token": bos,
                                          "sep_token": eos, "mask_token": mask})
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1",
        special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))])
    return Fast(tokenizer_object=tok, **special, model_input_names=["input_ids", "attention_mask"])


def tiny_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    tokenizer = _bert_like_tokenizer("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    return _save(BertModel(config), tokenizer, folder)


def tiny_roberta(folder: Path) -> Path:
    from transformers import RobertaConfig, RobertaModel

    tokenizer = _bert_like_tokenizer("<s>", "</s>", "<pad>", "<unk>", "<mask>")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=18, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                           eos_token_id=tokenizer.sep_token_id)
    return _save(RobertaModel(config), tokenizer, folder)


def tiny_t5(folder: Path) -> Path:
    from tokenizers import processors
    from transformers import T5Config, T5Model

    tok, Fast, special = _word_tokenizer({"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"})
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    tokenizer = Fast(tokenizer_object=tok, **special, model_input_names=["input_ids", "attention_mask"])
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=1,
                      num_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    # a full T5 (encoder + decoder) on disk: the plugin must load only its encoder
    return _save(T5Model(config), tokenizer, folder)


def _save(model, tokenizer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
