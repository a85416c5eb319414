//! The connections table (`Connections`) and the client keys (`ClientKeys`).

use super::*;

#[async_trait]
impl Connections for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item = item([
            ("connection_id", s(&connection.id)),
            ("connected_at", n(connection.connected_at)),
            (TTL_ATTRIBUTE, n(connection.expires_at)),
        ]);
        put_optional(&mut item, "source_ip", &connection.source_ip);
        put_optional(&mut item, "client", &connection.client);
        if !connection.subscriptions.is_empty() {
            item.insert(
                "subscriptions".into(),
                AttributeValue::Ss(connection.subscriptions.iter().cloned().collect()),
            );
        }
        self.client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.connections)
            .key("connection_id", s(id))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(
        &self,
        id: &str,
        identifier: &str,
        client: &str,
    ) -> Result<bool, StoreError> {
        self.change_subscriptions(id, identifier, Some(client))
            .await
    }

    async fn unsubscribe(&self, id: &str, identifier: &str) -> Result<bool, StoreError> {
        self.change_subscriptions(id, identifier, None).await
    }

    async fn connections(&self, now: i64) -> Result<Vec<Connection>, StoreError> {
        let mut connections = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.tables.connections)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items.unwrap_or_default() {
                let connection = Connection {
                    id: text(&item, "connection_id")?,
                    connected_at: number(&item, "connected_at")?,
                    source_ip: optional_text(&item, "source_ip"),
                    subscriptions: match item.get("subscriptions") {
                        Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
                        _ => BTreeSet::new(),
                    },
                    client: optional_text(&item, "client"),
                    expires_at: number(&item, TTL_ATTRIBUTE)?,
                };
                if connection.expires_at > now {
                    connections.push(connection);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(connections),
            }
        }
    }
}

#[async_trait]
impl ClientKeys for DynamoStore {
    async fn add_client_key(&self, key: &ClientKey) -> Result<bool, StoreError> {
        let item = item([
            ("pk", s(CLIENT_KEYS_PK)),
            ("sk", s(format!("name#{}", key.name))),
            ("name", s(&key.name)),
            ("key_hash", s(&key.key_hash)),
            ("created_at", n(key.created_at)),
        ]);
        Ok(self.put_unless_present(item).await?.is_none())
    }

    async fn client_key_by_hash(&self, key_hash: &str) -> Result<Option<ClientKey>, StoreError> {
        // A handful of keys, one per Smokey instance: reading the partition is cheaper than
        // keeping a second item per key in step.
        Ok(self
            .client_keys()
            .await?
            .into_iter()
            .find(|k| k.key_hash == key_hash))
    }

    async fn client_keys(&self) -> Result<Vec<ClientKey>, StoreError> {
        self.query(CLIENT_KEYS_PK.to_string(), SortKeys::Prefix("name#"))
            .await?
            .iter()
            .map(|item| {
                Ok(ClientKey {
                    name: text(item, "name")?,
                    key_hash: text(item, "key_hash")?,
                    created_at: number(item, "created_at")?,
                })
            })
            .collect()
    }

    async fn revoke_client_key(&self, name: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.tables.main)
            .key("pk", s(CLIENT_KEYS_PK))
            .key("sk", s(format!("name#{name}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes.is_some_and(|old| !old.is_empty()))
    }
}
