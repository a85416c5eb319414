# A standalone ActionCable server (Rails' own, from Debian's ruby-actioncable) with the
# channel metasmoke has: SmokeDetectorChannel streams 'smokedetector_messages' to a known
# key and rejects any other. /control lets a test broadcast, restart the cable server,
# change the known keys and read what the server saw.
#
#   METASMOKE_KEYS=key1,key2 puma -b tcp://127.0.0.1:PORT local/tests/metasmoke/config.ru

require "json"
require "logger"
require "set"
require "action_cable"
require "action_dispatch"

module Metasmoke
  LOCK = Mutex.new
  KEYS = Set.new(ENV.fetch("METASMOKE_KEYS", "").split(","))
  SEEN = { "connections" => 0, "most_open" => 0, "confirmed" => 0, "rejected" => 0,
           "origins" => [] }
  # Every connection made, to count the open ones by their sockets: ActionCable's own
  # disconnect callbacks do not run for the sockets a restart closes.
  CONNECTIONS = []

  def self.note
    LOCK.synchronize { yield SEEN }
  end

  def self.open
    CONNECTIONS.count(&:open?)
  end
end

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    def connect
      Metasmoke.note do |seen|
        Metasmoke::CONNECTIONS << self
        seen["connections"] += 1
        seen["most_open"] = [seen["most_open"], Metasmoke.open].max
        seen["origins"] << request.origin
      end
    end

    def open?
      websocket.alive?
    end
  end

  class Channel < ActionCable::Channel::Base
  end
end

# What metasmoke's app/channels/smoke_detector_channel.rb does, with a key set for its table.
class SmokeDetectorChannel < ApplicationCable::Channel
  def subscribed
    if Metasmoke::LOCK.synchronize { Metasmoke::KEYS.include?(params[:key]) }
      stream_from "smokedetector_messages"
      Metasmoke.note { |seen| seen["confirmed"] += 1 }
    else
      Metasmoke.note { |seen| seen["rejected"] += 1 }
      reject
    end
  end
end

ActionCable.server.config.cable = { "adapter" => "async" }
ActionCable.server.config.connection_class = -> { ApplicationCable::Connection }
ActionCable.server.config.disable_request_forgery_protection = true
ActionCable.server.config.logger = Logger.new($stderr, level: Logger::WARN)

control = lambda do |env|
  request = Rack::Request.new(env)
  ok = [200, { "content-type" => "application/json" }, ["{}"]]
  case [request.request_method, request.path_info]
  when ["POST", "/broadcast"]
    ActionCable.server.broadcast("smokedetector_messages", JSON.parse(request.body.read))
    ok
  when ["POST", "/restart"]
    ActionCable.server.restart
    ok
  when ["PUT", "/keys"]
    keys = JSON.parse(request.body.read)
    Metasmoke::LOCK.synchronize { Metasmoke::KEYS.replace(keys) }
    ok
  when ["GET", "/seen"]
    seen = Metasmoke.note { |counts| counts.merge("open" => Metasmoke.open) }
    [200, { "content-type" => "application/json" }, [JSON.generate(seen)]]
  else
    [404, { "content-type" => "text/plain" }, ["no such control route\n"]]
  end
end

map("/cable") { run ActionCable.server }
map("/control") { run control }
