"""S3HookStore: podledger's ObjectStore interface implemented with the Amazon provider's S3Hook."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook


class S3HookStore:
    """Keys relative to ``bucket``; credentials, endpoint and role come from the AWS connection."""

    scheme = "s3"

    def __init__(self, bucket: str, aws_conn_id: str = "aws_default") -> None:
        self.bucket = bucket
        self.hook = S3Hook(aws_conn_id=aws_conn_id)

    def put(self, key: str, data: bytes) -> None:
        self.hook.load_bytes(data, key=key, bucket_name=self.bucket, replace=True)

    def get(self, key: str) -> bytes:
        return self.hook.get_key(key, bucket_name=self.bucket).get()["Body"].read()

    def exists(self, key: str) -> bool:
        return bool(self.hook.check_for_key(key, bucket_name=self.bucket))

    def list(self, prefix: str) -> list[str]:
        return sorted(self.hook.list_keys(bucket_name=self.bucket, prefix=prefix))

    def delete(self, keys: list[str]) -> None:
        if keys:
            self.hook.delete_objects(bucket=self.bucket, keys=keys)
