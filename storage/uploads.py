"""The upload handler of POST /api/v1/files/upload: the request body is spooled to a
temporary file chunk by chunk (never held in memory) and refused as soon as the file
bytes pass the limit, with the temporary file removed on the spot."""

from django.core.files.uploadhandler import TemporaryFileUploadHandler

from storage.streams import too_large

# Multipart framing and small fields may add this much to the file bytes.
MULTIPART_SLACK = 64 * 1024


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Spools file fields to disk; FILE_TOO_LARGE (413) once the files of one request
    exceed ``max_bytes`` in all (or at once, when Content-Length already says so)."""

    def __init__(self, request=None, *, max_bytes: int):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.max_bytes + MULTIPART_SLACK:
            raise too_large(self.max_bytes)
        return None

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.upload_interrupted()  # closes and removes the temporary file
            raise too_large(self.max_bytes)
        return super().receive_data_chunk(raw_data, start)
