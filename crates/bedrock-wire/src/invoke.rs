//! InvokeModel / InvokeModelWithResponseStream bodies for imported models (bedrock-cmi.md §3.6).
