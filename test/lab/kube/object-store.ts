// The S3 API of the lab's object store (SeaweedFS's S3 gateway in the real cluster), as much of it as
// k3s's etcd-s3 client uses (k3s-io/k3s pkg/etcd/s3/s3.go, minio-go): PutObject, GetObject,
// DeleteObject and ListObjectsV2 with a prefix, path-style (`/<bucket>/<key>`). Requests are
// recognised by their SigV4 Authorization header; the lab checks the access key it names against the
// keys allowed for the bucket, not the signature itself (a lab simplification, said here).
// Error bodies follow https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html.
import type { IncomingMessage, ServerResponse } from 'node:http';

interface StoredObject {
  body: Buffer;
  modified: Date;
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export class ObjectStore {
  private readonly objects = new Map<string, StoredObject>();
  private readonly keys = new Map<string, Set<string>>();

  /** Lets requests signed with this access key use the bucket (and creates the bucket). */
  allow(bucket: string, accessKey: string): void {
    const set = this.keys.get(bucket) ?? new Set<string>();
    set.add(accessKey);
    this.keys.set(bucket, set);
  }

  /** Keys under a prefix of a bucket, with sizes (for tests and faults). */
  list(bucket: string, prefix = ''): { key: string; size: number; modified: Date }[] {
    const out: { key: string; size: number; modified: Date }[] = [];
    for (const [k, o] of this.objects) {
      if (!k.startsWith(`${bucket}/`)) continue;
      const key = k.slice(bucket.length + 1);
      if (key.startsWith(prefix)) out.push({ key, size: o.body.length, modified: o.modified });
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Fault and test hook: the object is gone (a bucket lifecycle rule, an operator's mistake). */
  remove(bucket: string, key: string): void {
    this.objects.delete(`${bucket}/${key}`);
  }

  handles(req: IncomingMessage): boolean {
    return /^AWS4-HMAC-SHA256 /.test(req.headers.authorization ?? '');
  }

  serve(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => this.answer(req, Buffer.concat(chunks), res));
  }

  private answer(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://store');
    const [bucket, ...rest] = u.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const key = rest.join('/');
    const error = (status: number, code: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error>`,
      );
    };
    const access = /Credential=([^/]+)\//.exec(req.headers.authorization ?? '')?.[1];
    const allowed = bucket ? this.keys.get(bucket) : undefined;
    if (!bucket || !allowed) return error(404, 'NoSuchBucket', 'The specified bucket does not exist');
    if (!access || !allowed.has(access))
      return error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    const id = `${bucket}/${key}`;
    if (!key && req.method === 'GET') {
      const prefix = u.searchParams.get('prefix') ?? '';
      const items = this.list(bucket, prefix);
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
          `<Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${items.length}</KeyCount>` +
          `<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>` +
          items
            .map(
              (i) =>
                `<Contents><Key>${xmlEscape(i.key)}</Key><LastModified>${i.modified.toISOString()}</LastModified>` +
                `<Size>${i.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
            )
            .join('') +
          `</ListBucketResult>`,
      );
      return;
    }
    if (!key) return error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    if (req.method === 'PUT') {
      this.objects.set(id, { body, modified: new Date() });
      res.writeHead(200, { etag: `"${body.length.toString(16)}"` });
      res.end();
      return;
    }
    const obj = this.objects.get(id);
    if (req.method === 'DELETE') {
      this.objects.delete(id);
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    if (!obj) return error(404, 'NoSuchKey', 'The specified key does not exist.');
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': obj.body.length,
      'last-modified': obj.modified.toUTCString(),
    });
    res.end(req.method === 'HEAD' ? undefined : obj.body);
  }
}
