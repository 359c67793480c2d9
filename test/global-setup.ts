// Placeholder replaced by the Temporal dev-server setup (foundation issue).
export default async function setup() {}
